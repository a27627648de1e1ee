//! `agentgate receipt verify`: check a signed decision receipt.

use super::Format;
use super::{EXIT_ALLOW, EXIT_DENY, EXIT_USAGE};
use agentgate::jwks_fetch::HttpsFetcher;
use agentgate::receipts::verify::{self, VerifiedReceipt};
use agentgate::wire::RequestJson;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Check signed decision receipts (`[receipts]`).
#[derive(Debug, Args)]
pub struct ReceiptArgs {
    #[command(subcommand)]
    what: ReceiptCommand,
}

#[derive(Debug, Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt's signature, and optionally that a request and a policy directory are
    /// the ones it names.
    ///
    /// Exit status: 0 the signature verifies and everything asked for matches; 1 it does not
    /// verify, or something differs; 2 unusable input (unreadable files, an unreachable JWKS URL).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The receipt (a compact JWS), a file holding it, or `-` for standard input.
    receipt: String,
    /// The receipt keys: a JWKS file, or the URL `agentgate serve` publishes them at
    /// (`…/.well-known/agentgate-receipt-keys`).
    #[arg(long)]
    jwks: String,
    /// A request JSON file (as `agentgate check` reads it): it must be the request decided.
    /// Credentials in it are ignored; a receipt never binds one.
    #[arg(long)]
    request: Option<PathBuf>,
    /// A policy directory: its `*.cedar` files and `schema.cedarschema` must be those in force.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: ReceiptArgs) -> anyhow::Result<u8> {
    match args.what {
        ReceiptCommand::Verify(args) => verify_command(args),
    }
}

fn verify_command(args: VerifyArgs) -> anyhow::Result<u8> {
    let receipt = read_receipt(&args.receipt)?;
    let jwks = if agentgate::config::is_url(&args.jwks) {
        match HttpsFetcher::default().fetch_fresh(&args.jwks) {
            Ok(jwks) => jwks,
            Err(e) => {
                eprintln!("agentgate: {e}");
                return Ok(EXIT_USAGE);
            }
        }
    } else {
        std::fs::read_to_string(&args.jwks).with_context(|| format!("reading {}", args.jwks))?
    };
    let request = match &args.request {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            match RequestJson::parse(&text) {
                Ok(r) => Some((path.clone(), r.to_check_request(None))),
                Err(e) => {
                    eprintln!("agentgate: {}: {e}", path.display());
                    return Ok(EXIT_USAGE);
                }
            }
        }
    };
    let verified = match verify::verify(&receipt, &jwks) {
        Ok(v) => v,
        Err(e) => {
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&json!({ "verified": false, "error": e }))?),
                Format::Text => println!("receipt NOT verified: {e}"),
            }
            return Ok(EXIT_DENY);
        }
    };
    let request_matches = request.as_ref().map(|(_, r)| verified.matches_request(r));
    let policy_differences = match &args.policies {
        None => None,
        Some(dir) => match verified.policy_dir_mismatches(dir) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("agentgate: {e}");
                return Ok(EXIT_USAGE);
            }
        },
    };
    let all_match = request_matches != Some(false) && policy_differences.as_ref().is_none_or(Vec::is_empty);
    match args.format {
        Format::Json => {
            let report = json!({
                "verified": true,
                "kid": verified.kid,
                "claims": verified.claims,
                "request_matches": request_matches,
                "policies_match": policy_differences.as_ref().map(Vec::is_empty),
                "differing": policy_differences,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Format::Text => {
            print_text(&verified, request.as_ref().map(|(p, _)| p.as_path()).zip(request_matches), args.policies.as_deref().zip(policy_differences.as_deref()))
        }
    }
    Ok(if all_match { EXIT_ALLOW } else { EXIT_DENY })
}

fn print_text(verified: &VerifiedReceipt, request: Option<(&Path, bool)>, policies: Option<(&Path, &[&str])>) {
    let claim = |name: &str| verified.claims.get(name).cloned().unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    println!("receipt verified: signed with the key `{}`", verified.kid);
    let issued = claim("iat").as_u64().map(|t| humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)).to_string());
    println!(
        "  decision   {} ({}), decision id {}, at {}",
        text(&claim("decision")),
        text(&claim("outcome")),
        text(&claim("jti")),
        issued.unwrap_or_else(|| "?".into())
    );
    let chain: Vec<String> = claim("chain").as_array().map(|c| c.iter().map(text).collect()).unwrap_or_default();
    let user = claim("user");
    if !user.is_null() {
        println!("  for        {} through {}", text(&user), if chain.is_empty() { "no agent".to_owned() } else { chain.join(" ← ") });
    }
    let token = claim("token");
    if let Some(token) = token.as_object() {
        let field = |n: &str| token.get(n).map_or_else(|| "?".to_owned(), text);
        println!("  token      jti {} from {}", field("jti"), field("iss"));
    }
    if let Some(jkt) = claim("jkt").as_str() {
        println!("  proof key  {jkt}");
    }
    let determining: Vec<String> = claim("policies").as_array().map(|p| p.iter().map(text).collect()).unwrap_or_default();
    println!("  policies   {}", if determining.is_empty() { "(none)".to_owned() } else { determining.join(", ") });
    if let Some(config) = verified.config() {
        println!("  config     {} (policies {}, schema {}, settings {})", config.digest, config.policies, config.schema, config.settings);
    }
    println!("  request    {}", text(&claim("request")));
    if let Some((path, matches)) = request {
        if matches {
            println!("request {}: matches the receipt", path.display());
        } else {
            println!("request {}: DIFFERS: it is not the request this decision was made on", path.display());
        }
    }
    if let Some((dir, differing)) = policies {
        if differing.is_empty() {
            println!("policies {}: match the receipt (policies and schema)", dir.display());
        } else {
            println!("policies {}: DIFFER: {} not what was in force", dir.display(), differing.join(" and "));
        }
    }
}

/// The receipt text: `-` reads standard input, an existing file is read, anything else is the
/// receipt itself.
fn read_receipt(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the receipt from standard input")?;
        return Ok(s.trim().to_owned());
    }
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(text.trim().to_owned());
    }
    Ok(arg.trim().to_owned())
}
