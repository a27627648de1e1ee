//! `agentgate revoke`, `unrevoke` and `revocations`: change or read the revocation list where the
//! deployment keeps it — the shared store (`[state] backend = "redis"`: every node sees the change
//! within `revocation_refresh_ms`) or the revocation file (memory backend: rewritten atomically;
//! a running `serve` picks it up the same way).

use super::{EXIT_ALLOW, EXIT_DENY};
use agentgate::config::{self, BackendKind};
use agentgate::state::{self, Backend, StoreMetrics};
use agentgate_engine::revocation::{RevocationId, RevocationList};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to revoke: exactly one of `--agent`, `--user`, `--jti`, `--key`, `--kid` (the group
/// `what`, declared by the commands that flatten this), scoped by `--issuer` / `--trust-domain`.
#[derive(Debug, Args)]
#[group(skip)]
pub struct Target {
    /// An agent (any actor of a delegation chain, or a workload identity): its id, e.g.
    /// `spiffe://agents.example/mail-assistant`.
    #[arg(long, group = "what")]
    agent: Option<String>,
    /// A user (`sub`); with `--issuer`, only that issuer's user.
    #[arg(long, group = "what")]
    user: Option<String>,
    /// An access token (`jti`); with `--issuer`, only that issuer's token.
    #[arg(long, group = "what")]
    jti: Option<String>,
    /// A key by RFC 7638 thumbprint: an agent's proof key, an issuer key or a trust-domain key.
    #[arg(long, group = "what")]
    key: Option<String>,
    /// A key by `kid`, with `--issuer` or `--trust-domain` to say whose.
    #[arg(long, group = "what")]
    kid: Option<String>,
    /// The issuer (`iss`) that `--user`, `--jti` or `--kid` belongs to.
    #[arg(long)]
    issuer: Option<String>,
    /// The trust domain that `--kid` belongs to.
    #[arg(long, conflicts_with = "issuer")]
    trust_domain: Option<String>,
}

impl Target {
    fn id(&self) -> anyhow::Result<RevocationId> {
        let scoped = |issuer: &Option<String>| issuer.clone();
        if self.trust_domain.is_some() && self.kid.is_none() {
            anyhow::bail!("`--trust-domain` goes with `--kid`");
        }
        Ok(match (&self.agent, &self.user, &self.jti, &self.key, &self.kid) {
            (Some(agent), ..) if self.issuer.is_none() => RevocationId::Agent(agent.clone()),
            (Some(_), ..) => anyhow::bail!("`--issuer` does not scope `--agent`: agent ids are global"),
            (_, Some(sub), ..) => RevocationId::User { issuer: scoped(&self.issuer), sub: sub.clone() },
            (_, _, Some(jti), ..) => RevocationId::Token { issuer: scoped(&self.issuer), jti: jti.clone() },
            (_, _, _, Some(t), _) if self.issuer.is_none() => RevocationId::Thumbprint(t.clone()),
            (_, _, _, Some(_), _) => anyhow::bail!("a thumbprint names one key already; drop `--issuer`"),
            (_, _, _, _, Some(kid)) => match (&self.issuer, &self.trust_domain) {
                (Some(issuer), None) => RevocationId::IssuerKid { issuer: issuer.clone(), kid: kid.clone() },
                (None, Some(td)) => RevocationId::DomainKid { trust_domain: td.clone(), kid: kid.clone() },
                _ => anyhow::bail!("`--kid` needs `--issuer` or `--trust-domain`: a bare `kid` would revoke every issuer's key with that id"),
            },
            _ => anyhow::bail!("name what to revoke: `--agent`, `--user`, `--jti`, `--key` or `--kid`"),
        })
    }
}

/// Revoke an agent, user, token or key for the whole deployment.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(false)))]
pub struct RevokeArgs {
    /// Configuration file (its `[state]` says where the list lives).
    #[arg(long, short)]
    config: PathBuf,
    #[command(flatten)]
    target: Target,
    /// When the revocation lapses: a duration from now (`90m`, `7d`) or unix seconds. Without it,
    /// the revocation stands until `unrevoke`.
    #[arg(long)]
    expires: Option<String>,
}

/// Lift a revocation.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(false)))]
pub struct UnrevokeArgs {
    /// Configuration file.
    #[arg(long, short)]
    config: PathBuf,
    #[command(flatten)]
    target: Target,
}

/// Read or import the revocation list.
#[derive(Debug, Args)]
pub struct RevocationsArgs {
    #[command(subcommand)]
    what: Revocations,
}

#[derive(Debug, Subcommand)]
enum Revocations {
    /// Print the list in force as a revocation file (JSON).
    List {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Add every entry of a revocation file to the deployment's list (e.g. to move a file's list
    /// into the shared store).
    Import {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The revocation file to import.
        file: PathBuf,
    },
}

/// The backend of the deployment at `path`.
fn backend(path: &Path, for_import: bool) -> anyhow::Result<Arc<dyn Backend>> {
    let loaded = config::load_with(path, &config::NoFetch)?;
    let file = loaded.revocations_path.clone();
    // Importing into the store is how a file's list moves there; the file may still be named.
    let file = if for_import && loaded.file.state.backend == BackendKind::Redis { None } else { file };
    if loaded.file.state.backend == BackendKind::Memory && file.is_none() {
        anyhow::bail!("{}: the memory backend keeps revocations in a file; add `revocations = \"revoked.json\"` to the config", path.display());
    }
    state::open_backend(&loaded.file.state, file, Arc::new(StoreMetrics::default()))
}

fn expiry(text: &str) -> anyhow::Result<u64> {
    if let Ok(unix) = text.parse::<u64>() {
        // A bare number is a time, not a duration; one before 2001 is almost surely a mistake.
        if unix < 1_000_000_000 {
            anyhow::bail!("`--expires {text}`: bare numbers are unix seconds, and `{text}` is in 1970: for a duration write `{text}s`");
        }
        return Ok(unix);
    }
    let after = humantime::parse_duration(text).with_context(|| format!("`--expires {text}` is neither unix seconds nor a duration like `90m`"))?;
    Ok(agentgate::mint::now().saturating_add(after.as_secs()))
}

pub fn revoke(args: RevokeArgs) -> anyhow::Result<u8> {
    let id = args.target.id()?;
    let expires = args.expires.as_deref().map(expiry).transpose()?;
    let backend = backend(&args.config, false)?;
    backend.revoke(&id, expires).map_err(|e| anyhow::anyhow!("{e}"))?;
    match expires {
        Some(at) => eprintln!("revoked {} until {at} ({} backend)", id.describe(), backend.kind()),
        None => eprintln!("revoked {} ({} backend)", id.describe(), backend.kind()),
    }
    Ok(EXIT_ALLOW)
}

pub fn unrevoke(args: UnrevokeArgs) -> anyhow::Result<u8> {
    let id = args.target.id()?;
    let backend = backend(&args.config, false)?;
    if backend.unrevoke(&id).map_err(|e| anyhow::anyhow!("{e}"))? {
        eprintln!("lifted the revocation of {} ({} backend)", id.describe(), backend.kind());
        Ok(EXIT_ALLOW)
    } else {
        eprintln!("{} was not revoked", id.describe());
        Ok(EXIT_DENY)
    }
}

pub fn revocations(args: RevocationsArgs) -> anyhow::Result<u8> {
    match args.what {
        Revocations::List { config } => {
            let backend = backend(&config, false)?;
            let (_, list) = backend.load_revocations().map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string_pretty(&list.to_file_json())?);
        }
        Revocations::Import { config, file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let list = RevocationList::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let backend = backend(&config, true)?;
            let mut count = 0usize;
            for (id, expires) in list.entries() {
                let id = RevocationId::from_canonical(id).map_err(anyhow::Error::msg)?;
                backend.revoke(&id, expires).map_err(|e| anyhow::anyhow!("{e}"))?;
                count += 1;
            }
            eprintln!("imported {count} revocation id(s) from {} ({} backend)", file.display(), backend.kind());
        }
    }
    Ok(EXIT_ALLOW)
}
