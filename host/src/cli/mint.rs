//! `agentgate mint`: a development issuer for tests, demos and walkthroughs.

use agentgate::mint::{self, AccessTokenSpec, KeyPair, StatusListSpec};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// DEVELOPMENT AND TEST ISSUER — mint keys, access tokens, DPoP proofs and agent identities.
///
/// Never needed by the verifier, never for production: a real authorization server and agent
/// platform issue these. Output goes to standard output.
#[derive(Debug, Args)]
pub struct MintArgs {
    #[command(subcommand)]
    what: Mint,
}

#[derive(Debug, Subcommand)]
enum Mint {
    /// Generate a P-256 key pair: writes the private JWK and prints the public JWKS.
    Keygen {
        /// Key id (`kid`).
        #[arg(long)]
        kid: String,
        /// Where to write the private JWK (mode 0600). Printed to stdout when absent.
        #[arg(long)]
        private_out: Option<PathBuf>,
    },
    /// Mint an ES256 access token (`at+jwt`) delegated from a user to an agent chain.
    Token(TokenArgs),
    /// Mint a DPoP proof for one request.
    Proof {
        /// The agent's private JWK.
        #[arg(long)]
        key: PathBuf,
        /// HTTP method (`htm`).
        #[arg(long, default_value = "GET")]
        method: String,
        /// Request URI (`htu`).
        #[arg(long)]
        uri: String,
        /// The access token the proof accompanies (for `ath`).
        #[arg(long)]
        token: String,
        /// Server nonce.
        #[arg(long)]
        nonce: Option<String>,
        /// `iat` (unix seconds; default now).
        #[arg(long)]
        iat: Option<u64>,
    },
    /// Mint an agent workload identity: a WIMSE `wit+jwt` (default) or a JWT-SVID.
    Identity {
        /// The trust domain's private JWK.
        #[arg(long)]
        domain_key: PathBuf,
        /// The agent's SPIFFE ID (`sub`).
        #[arg(long)]
        spiffe_id: String,
        /// The agent's private JWK (its public key goes in `cnf.jwk`).
        #[arg(long)]
        agent_key: Option<PathBuf>,
        /// Mint a JWT-SVID for this audience instead of a WIT.
        #[arg(long)]
        svid_audience: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        lifetime: u64,
    },
    /// Mint a Status List Token (`statuslist+jwt`, draft-ietf-oauth-status-list-21) to serve at
    /// `--uri`: every entry valid (0) unless `--set INDEX=STATUS` says otherwise.
    StatusList {
        /// The issuer's private JWK (or the configured `status_issuer`'s).
        #[arg(long)]
        key: PathBuf,
        /// The URI the list is served at (its `sub`; tokens name it in `status.status_list.uri`).
        #[arg(long)]
        uri: String,
        /// `iss` of the list (optional in the draft; checked against the issuer when present).
        #[arg(long)]
        iss: Option<String>,
        /// Bits per entry: 1, 2, 4 or 8.
        #[arg(long, default_value_t = 1, value_parser = parse_bits)]
        bits: u8,
        /// Number of entries.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// An entry's status, e.g. `3=1` (invalid) or `7=2` (suspended); repeat as needed.
        #[arg(long = "set", value_parser = parse_entry)]
        set: Vec<(usize, u8)>,
        /// `ttl`: seconds a consumer may cache the list.
        #[arg(long, default_value_t = 300)]
        ttl: u64,
        /// Lifetime (`exp - iat`) in seconds.
        #[arg(long, default_value_t = 86_400)]
        lifetime: u64,
    },
    /// Print the RFC 7638 thumbprint of a key (the `cnf.jkt` value).
    Thumbprint {
        /// A private or public JWK file.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The issuer's private JWK (its `kid` goes in the header).
    #[arg(long)]
    key: PathBuf,
    /// `iss`.
    #[arg(long)]
    iss: String,
    /// `sub`: the user.
    #[arg(long)]
    sub: String,
    /// `aud` (repeat for several).
    #[arg(long, required = true)]
    aud: Vec<String>,
    /// Actor of the delegation chain, current first (repeat for sub-agents).
    #[arg(long = "agent")]
    agents: Vec<String>,
    /// Space-separated scopes.
    #[arg(long, default_value = "")]
    scope: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    lifetime: u64,
    /// `iat` (unix seconds; default now).
    #[arg(long)]
    iat: Option<u64>,
    /// `client_id`.
    #[arg(long, default_value = "agentgate-dev-client")]
    client_id: String,
    /// `jti` (default random).
    #[arg(long)]
    jti: Option<String>,
    /// Bind the token to this agent key (`cnf.jkt`): a private or public JWK file.
    #[arg(long)]
    bind: Option<PathBuf>,
    /// Reference a token status list (`status.status_list.uri`); with `--status-index`.
    #[arg(long, requires = "status_index")]
    status_uri: Option<String>,
    /// The token's index in that list (`status.status_list.idx`).
    #[arg(long, requires = "status_uri")]
    status_index: Option<u64>,
}

fn parse_bits(text: &str) -> Result<u8, String> {
    match text {
        "1" | "2" | "4" | "8" => text.parse().map_err(|_| text.to_owned()),
        _ => Err(format!("`{text}` is not 1, 2, 4 or 8")),
    }
}

fn parse_entry(text: &str) -> Result<(usize, u8), String> {
    let (index, status) = text.split_once('=').ok_or_else(|| format!("`{text}` is not INDEX=STATUS"))?;
    let index = index.parse().map_err(|_| format!("`{index}` is not an index"))?;
    let status = status.parse().map_err(|_| format!("`{status}` is not a status byte (0-255)"))?;
    Ok((index, status))
}

pub fn run(args: MintArgs) -> anyhow::Result<u8> {
    match args.what {
        Mint::Keygen { kid, private_out } => {
            let key = KeyPair::generate(kid)?;
            let private = serde_json::to_string_pretty(&key.private_jwk())?;
            match private_out {
                Some(path) => write_private(&path, &private)?,
                None => println!("{private}"),
            }
            println!("{}", serde_json::to_string_pretty(&mint::jwks(&[&key]))?);
        }
        Mint::Token(t) => {
            let issuer = read_key(&t.key)?;
            let mut spec = AccessTokenSpec::new(&t.iss, &t.sub, t.aud.first().map_or("", String::as_str));
            spec.audience = t.aud;
            spec.actors = t.agents;
            spec.scopes = t.scope.split_whitespace().map(str::to_owned).collect();
            spec.lifetime_secs = t.lifetime;
            spec.issued_at = t.iat.unwrap_or_else(mint::now);
            spec.client_id = t.client_id;
            if let Some(jti) = t.jti {
                spec.jti = jti;
            }
            if let Some(bind) = t.bind {
                spec.bound_key = Some(thumbprint_of(&bind)?);
            }
            spec.status = t.status_uri.zip(t.status_index).map(|(uri, idx)| (idx, uri));
            println!("{}", spec.sign(&issuer));
        }
        Mint::StatusList { key, uri, iss, bits, size, set, ttl, lifetime } => {
            let signer = read_key(&key)?;
            let mut entries = vec![0u8; size];
            for (index, status) in set {
                let max = (1u16 << bits) - 1;
                if u16::from(status) > max {
                    anyhow::bail!("status {status} does not fit in {bits} bit(s) (at most {max})");
                }
                *entries.get_mut(index).ok_or_else(|| anyhow::anyhow!("index {index} is outside the list of {size} entries"))? = status;
            }
            let spec = StatusListSpec { issuer: iss, bits, ttl_secs: Some(ttl), lifetime_secs: Some(lifetime), ..StatusListSpec::new(&uri, entries) };
            println!("{}", spec.sign(&signer));
        }
        Mint::Proof { key, method, uri, token, nonce, iat } => {
            let agent = read_key(&key)?;
            println!("{}", mint::dpop_proof(&agent, &method, &uri, &token, iat.unwrap_or_else(mint::now), nonce.as_deref()));
        }
        Mint::Identity { domain_key, spiffe_id, agent_key, svid_audience, lifetime } => {
            let domain = read_key(&domain_key)?;
            let token = match (svid_audience, agent_key) {
                (Some(aud), _) => mint::jwt_svid(&domain, &spiffe_id, &aud, mint::now(), lifetime),
                (None, Some(agent)) => mint::workload_identity(&domain, &spiffe_id, &read_key(&agent)?, mint::now(), lifetime),
                (None, None) => anyhow::bail!("a workload identity token needs `--agent-key` (or use `--svid-audience`)"),
            };
            println!("{token}");
        }
        Mint::Thumbprint { key } => println!("{}", thumbprint_of(&key)?),
    }
    Ok(super::EXIT_ALLOW)
}

fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    KeyPair::from_jwk(&text).with_context(|| format!("{}", path.display()))
}

fn thumbprint_of(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let obj = agentgate_engine::jose::json::parse_object(text.as_bytes()).map_err(|e| anyhow::anyhow!("{}: the JWK {e}", path.display()))?;
    // Thumbprints cover public members only; drop `d` so private JWK files work too.
    let public: serde_json::Map<String, serde_json::Value> = obj.into_iter().filter(|(k, _)| k != "d").collect();
    let jwk = agentgate_engine::jose::jwk::EcPublicJwk::from_object(&public).map_err(|e| anyhow::anyhow!("{}: the JWK {e}", path.display()))?;
    Ok(jwk.thumbprint())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    file.write_all(text.as_bytes())?;
    eprintln!("wrote the private key to {}", path.display());
    Ok(())
}
