//! The SMT solver behind every analysis: a cvc5 process driven by `cedar-policy-symcc`, with a
//! time limit on every query. cvc5 is told the limit itself (`--tlimit-per`), and the query is
//! abandoned a second after it in any case; the process is then replaced, since its state is
//! unknown. A query that does not finish in time is `Unknown`, never "no difference".

use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicySet, Env};
use std::time::Duration;

/// What a query found.
#[derive(Debug)]
pub enum Answer {
    /// The property holds: no counterexample exists.
    Holds,
    /// A request and entities where it does not.
    Counterexample(Box<Env>),
    /// The solver could not say (out of time, `unknown`, or an error), and why.
    Unknown(String),
}

/// A solver process for a series of queries.
pub struct Solver {
    limit: Duration,
    compiler: Option<CedarSymCompiler<LocalSolver>>,
}

impl std::fmt::Debug for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Solver").field("limit", &self.limit).finish_non_exhaustive()
    }
}

/// The solver program: `$CVC5`, else `cvc5` on the `PATH` (as `cedar-policy-symcc` finds it).
pub fn program() -> String {
    std::env::var("CVC5").unwrap_or_else(|_| "cvc5".into())
}

/// What to do when there is no solver.
pub const INSTALL_HINT: &str =
    "`agentgate analyze` needs the SMT solver cvc5: install it (Debian and Ubuntu: `apt-get install cvc5`; tested with 1.0.3) or set CVC5 to its path";

/// The solver's version line (`cvc5 --version`), or why it cannot be run.
pub fn version() -> Result<String, String> {
    let program = program();
    let out = std::process::Command::new(&program).arg("--version").output().map_err(|e| format!("cannot run `{program}` ({e}): {INSTALL_HINT}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_default().trim().to_owned();
    if !out.status.success() || line.is_empty() {
        return Err(format!("`{program} --version` did not answer as cvc5 does: {INSTALL_HINT}"));
    }
    Ok(line)
}

impl Solver {
    /// A solver whose every query gets at most `limit`.
    pub fn new(limit: Duration) -> Self {
        Solver { limit, compiler: None }
    }

    fn compiler(&mut self) -> Result<&mut CedarSymCompiler<LocalSolver>, String> {
        if self.compiler.is_none() {
            let millis = self.limit.as_millis().max(1);
            // `--strings-exp`: Cedar's `like` becomes string containment, which cvc5 1.0.3 only
            // decides with its extended string solver.
            let args = [format!("--tlimit-per={millis}"), "--strings-exp".to_owned()];
            let solver = LocalSolver::cvc5_with_args(args).map_err(|e| format!("cannot start `{}` ({e}): {INSTALL_HINT}", program()))?;
            self.compiler = Some(CedarSymCompiler::new(solver).map_err(|e| e.to_string())?);
        }
        self.compiler.as_mut().ok_or_else(|| "no solver".to_owned())
    }

    /// Is every request `first` allows also allowed by `second`? Else a request that `first`
    /// allows and `second` denies.
    pub async fn implies(&mut self, first: &CompiledPolicySet, second: &CompiledPolicySet) -> Answer {
        self.ask(async |c: &mut CedarSymCompiler<LocalSolver>| c.check_implies_with_counterexample_opt(first, second).await).await
    }

    /// Asks one question whose answer is "holds", or a counterexample.
    pub async fn ask<Q>(&mut self, query: Q) -> Answer
    where
        Q: AsyncFnOnce(&mut CedarSymCompiler<LocalSolver>) -> cedar_policy_symcc::err::Result<Option<Env>>,
    {
        let limit = self.limit;
        let compiler = match self.compiler() {
            Ok(c) => c,
            Err(e) => return Answer::Unknown(e),
        };
        let answer = tokio::time::timeout(limit + Duration::from_secs(1), query(compiler)).await;
        match answer {
            Ok(Ok(None)) => Answer::Holds,
            Ok(Ok(Some(env))) => Answer::Counterexample(Box::new(env)),
            Ok(Err(e)) => {
                self.compiler = None;
                let why = e.to_string();
                Answer::Unknown(if why.contains("unknown") { format!("the solver answered `unknown` within {} ms", limit.as_millis()) } else { why })
            }
            Err(_) => {
                // The process is stopped rather than left to run out its own limit.
                if let Some(mut stale) = self.compiler.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), stale.solver_mut().clean_up()).await;
                }
                Answer::Unknown(format!("the solver did not answer within {} ms", limit.as_millis()))
            }
        }
    }
}
