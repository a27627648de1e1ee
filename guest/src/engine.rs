//! The decision pipeline for one call: credentials → access token → binding and proof → agent
//! identity → revocation → replay → Cedar. Every failure is a deny with one outcome.

use crate::access_token::{self, TokenCheck, VerifiedAccessToken};
use crate::authorizer::context::ContextFacts;
use crate::authorizer::{Authorizer, AuthzCall, BuiltRequest, PolicyAnswer, PrincipalKind, SourceText};
use crate::decision::{Decision, Denial, Outcome, VerifiedFacts};
use crate::dpop::{self, ProofCheck, VerifiedProof};
use crate::identity::{self, VerifiedIdentity};
use crate::jose::es256::{RustCryptoVerifier, SignatureVerifier};
use crate::jose::jwk::quote;
use crate::nonce::NonceIssuer;
use crate::recorded::RecordedCall;
use crate::request::CheckRequest;
use crate::revocation::{CallIds, RevocationId, RevocationList};
use crate::settings::{DpopMode, Settings};
use crate::state::{ProofAnswer, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};
use crate::status_list::{self, StatusList, StatusListMode};
use crate::token_cache::{TokenCache, TokenHash};
use crate::trust::{TrustConfig, TrustStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Everything an engine is built from; mirrors the WIT `config` record (and is its JSON form for
/// `preload`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Cedar policy files.
    pub policies: Vec<SourceText>,
    /// Cedar schema.
    pub schema: SourceText,
    /// `Settings` as JSON.
    pub settings_json: String,
    /// `TrustConfig` as JSON.
    pub trust_json: String,
    /// The revocation list as JSON ("" for none).
    pub revocations_json: String,
}

/// The configured engine. Create once; `check` many calls, from any thread.
pub struct Engine {
    settings: Settings,
    trust: TrustStore,
    authorizer: Authorizer,
    nonces: Option<NonceIssuer>,
    revocations: RwLock<Arc<RevocationList>>,
    tokens: Mutex<TokenCache>,
    /// Verified status lists by `uri`: a list is verified and inflated once per version.
    status_lists: Mutex<HashMap<String, Arc<StatusList>>>,
    state: Box<dyn SharedState>,
    verifier: Box<dyn SignatureVerifier>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// How the authorization header presented the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// A check's trace, for `explain`: what was verified and the Cedar request as built.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Steps in order, with their results.
    pub steps: Vec<(String, String)>,
    /// The Cedar request, when the call got that far.
    pub request: Option<BuiltRequest>,
}

impl Engine {
    /// Builds an engine with RustCrypto signature verification.
    pub fn new(config: &EngineConfig, state: Box<dyn SharedState>) -> Result<Self, String> {
        Engine::with_verifier(config, state, Box::new(RustCryptoVerifier::new()))
    }

    /// Builds an engine with a chosen signature verifier (e.g. a host's native library).
    pub fn with_verifier(config: &EngineConfig, state: Box<dyn SharedState>, verifier: Box<dyn SignatureVerifier>) -> Result<Self, String> {
        let settings: Settings = serde_json::from_str(&config.settings_json).map_err(|e| format!("settings: {e}"))?;
        settings.validate()?;
        let trust_config: TrustConfig = serde_json::from_str(&config.trust_json).map_err(|e| format!("trust: {e}"))?;
        let trust = TrustStore::from_config(&trust_config)?;
        if trust.issuer_names().next().is_none() {
            return Err("no issuer is configured: no access token could ever be accepted".into());
        }
        let nonces = settings.dpop.nonce.as_ref().map(NonceIssuer::new).transpose()?;
        let authorizer = Authorizer::new(&config.policies, &config.schema)?;
        let authorizer = if settings.policy_index { authorizer } else { authorizer.without_index() };
        let revocations = RevocationList::parse(&config.revocations_json)?;
        let tokens = Mutex::new(TokenCache::new(settings.limits.token_cache_entries));
        Ok(Engine {
            settings,
            trust,
            authorizer,
            nonces,
            revocations: RwLock::new(Arc::new(revocations)),
            tokens,
            status_lists: Mutex::new(HashMap::new()),
            state,
            verifier,
        })
    }

    /// Prepares for traffic now instead of on the first calls: precomputed tables for every
    /// trusted key (issuers, trust domains) and the generator. Long-lived and pre-initialized
    /// instances call it; one-shot checks need not.
    pub fn warm_up(&self) {
        for key in self.trust.all_keys() {
            self.verifier.pin(&key.key);
        }
    }

    /// The access token for this call: from the cache when the same bytes were verified before
    /// (the clock is still checked), else verified and remembered.
    fn access_token(&self, token: &str, key: TokenHash, check: TokenCheck<'_>) -> Result<Arc<VerifiedAccessToken>, Denial> {
        let cached = self.tokens.lock().ok().and_then(|c| c.get(&key));
        if let Some(verified) = cached {
            if let Err(reason) = access_token::check_times(&verified, check) {
                if let Ok(mut cache) = self.tokens.lock() {
                    cache.remove(&key);
                }
                return Err(Denial::token(reason));
            }
            return Ok(verified);
        }
        let verified = Arc::new(access_token::verify_timeless(token, check, self.verifier.as_ref()).map_err(Denial::token)?);
        access_token::check_times(&verified, check).map_err(Denial::token)?;
        if let Ok(mut cache) = self.tokens.lock() {
            cache.insert(key, Arc::clone(&verified));
        }
        Ok(verified)
    }

    /// Replaces the revocation list; on error the previous list stays in force.
    pub fn set_revocations(&self, json: &str) -> Result<usize, String> {
        let list = RevocationList::parse(json)?;
        let count = list.len();
        let mut slot = self.revocations.write().map_err(|_| "revocation list lock is poisoned".to_owned())?;
        *slot = Arc::new(list);
        Ok(count)
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The authorizer (policies, schema).
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// The trusted issuers and trust domains.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Decides one call.
    pub fn check(&self, request: &CheckRequest) -> Decision {
        self.check_traced(request, None)
    }

    /// Decides one call and, when it got as far as the policies, the call as it was authorized
    /// (for a decision log and `agentgate replay`).
    pub fn check_recorded(&self, request: &CheckRequest) -> (Decision, Option<RecordedCall>) {
        let mut recorded = None;
        let decision = self.decide(request, &mut None, Some(&mut recorded));
        (decision, recorded)
    }

    /// Decides one call and records what was checked.
    pub fn check_traced(&self, request: &CheckRequest, mut trace: Option<&mut Trace>) -> Decision {
        self.decide(request, &mut trace, None)
    }

    fn decide(&self, request: &CheckRequest, trace: &mut Option<&mut Trace>, recorded: Option<&mut Option<RecordedCall>>) -> Decision {
        let mut facts = VerifiedFacts::default();
        let result = self.run(request, &mut facts, trace, recorded);
        if let (Err(denial), Some(t)) = (&result, trace.as_deref_mut()) {
            t.steps.push((denial.outcome.as_str().to_owned(), denial.reason.clone()));
        }
        Decision::of_answer(result, facts)
    }

    /// Which of `tools` (MCP tool names) a `tools/list` caller may see: those some call could be
    /// permitted for, whatever its arguments (`Authorizer::tool_visible`). The request's
    /// credentials are verified as by `check` — but its proof is not spent again: a host asks
    /// this only for a `tools/list` request it has already decided allowed. A request whose
    /// credentials do not verify gets that denial instead.
    pub fn visible_tools(&self, request: &CheckRequest, tools: &[String]) -> Result<Vec<bool>, Box<Decision>> {
        let mut facts = VerifiedFacts::default();
        match self.verify(request, &mut facts, &mut None, false) {
            Ok(call) => Ok(tools.iter().map(|tool| self.authorizer.tool_visible(call.principal_kind, &call.principal_id, tool, &call.context)).collect()),
            Err(denial) => Err(Box::new(Decision::denied(denial, facts))),
        }
    }

    fn run(
        &self,
        req: &CheckRequest,
        facts: &mut VerifiedFacts,
        trace: &mut Option<&mut Trace>,
        recorded: Option<&mut Option<RecordedCall>>,
    ) -> Result<PolicyAnswer, Denial> {
        let call = self.verify(req, facts, trace, true)?;
        let authz = AuthzCall {
            principal_kind: call.principal_kind,
            principal_id: &call.principal_id,
            action: &req.action,
            resource: &req.resource,
            facts: &call.context,
            input: req.context_json.as_deref(),
            entities: req.entities_json.as_deref(),
        };
        if let Some(t) = trace.as_deref_mut() {
            t.request = self.authorizer.describe(&authz).ok();
        }
        if let Some(slot) = recorded {
            *slot = Some(RecordedCall::of(&authz));
        }
        self.authorizer.authorize(&authz)
    }

    /// Every check but the policies: the credentials, their binding, identity, revocation, status,
    /// and (with `spend_proof`) the proof's single use. The verified facts for Cedar come back.
    fn verify(&self, req: &CheckRequest, facts: &mut VerifiedFacts, trace: &mut Option<&mut Trace>, spend_proof: bool) -> Result<VerifiedCall, Denial> {
        let mut step = |name: &str, detail: String| {
            if let Some(t) = trace.as_deref_mut() {
                t.steps.push((name.to_owned(), detail));
            }
        };
        let now = resolve_now(req.now)?;
        self.check_sizes(req)?;
        let (scheme, token) = parse_authorization(req.credentials.authorization.as_deref())?;
        step(
            "authorization",
            match scheme {
                Scheme::Dpop => "`DPoP` scheme".to_owned(),
                Scheme::Bearer => "`Bearer` scheme".to_owned(),
            },
        );

        let check = TokenCheck { settings: &self.settings, trust: &self.trust, now };
        // SHA-256 of the token: the cache key, and the `ath` a proof must carry.
        let token_hash = TokenCache::key(token);
        let at = self.access_token(token, token_hash, check)?;
        let (principal_kind, principal_id) = match at.chain.current() {
            Some(actor) => (PrincipalKind::Agent, actor.sub.clone()),
            None => (PrincipalKind::User, at.subject.clone()),
        };
        facts.principal = Some(crate::authorizer::entity_display(principal_kind.type_name(), &principal_id));
        facts.user = Some(at.subject.clone());
        facts.chain = at.chain.subjects();
        facts.token_id = Some(at.jti.clone());
        step(
            "access token",
            format!("valid: issuer `{}`, key `{}`, user `{}`, {} actor(s), expires at {}", at.issuer, at.kid, at.subject, at.chain.depth(), at.expires_at),
        );

        let proof = self.check_binding(scheme, &at, &token_hash, req, now)?;
        if let Some(p) = &proof {
            facts.key_thumbprint = Some(p.thumbprint.clone());
            step("dpop proof", format!("valid: key `{}`, bound to the token", p.thumbprint));
        } else {
            step("dpop proof", "none (unbound bearer token)".into());
        }

        let identity = self.check_identity(req, &at, proof.as_ref(), now)?;
        match &identity {
            Some(id) => step(
                "agent identity",
                format!(
                    "valid: `{}` ({})",
                    id.spiffe_id.as_str(),
                    match id.kind {
                        crate::identity::IdentityKind::WorkloadIdentityToken => "WIMSE workload identity token",
                        crate::identity::IdentityKind::JwtSvid => "JWT-SVID",
                    }
                ),
            ),
            None => step("agent identity", "none presented".into()),
        }

        self.check_revocation(&at, proof.as_ref(), identity.as_ref(), now)?;
        step("revocation", "not revoked".into());
        if let Some(checked) = self.check_status(&at, now)? {
            step("status list", checked);
        }

        if let Some(p) = &proof
            && spend_proof
        {
            self.remember_proof(p, now)?;
            step("replay", "proof `jti` is fresh".into());
        }

        let http = req.http.as_ref();
        let context = ContextFacts {
            user: at.subject.clone(),
            scopes: at.scopes.clone(),
            chain: facts.chain.clone(),
            issuer: at.issuer.clone(),
            token_id: at.jti.clone(),
            client_id: at.client_id.clone(),
            age_secs: now.saturating_sub(at.issued_at).max(0),
            lifetime_secs: at.expires_at.saturating_sub(at.issued_at),
            expires_in_secs: at.expires_at.saturating_sub(now).max(0),
            proof_bound: proof.is_some(),
            method: http.map(|h| h.method.clone()).unwrap_or_default(),
            uri: match &proof {
                Some(p) => p.uri.clone(),
                None => http.and_then(|h| dpop::normalize_uri(&h.uri).ok()).unwrap_or_default(),
            },
            key: proof.as_ref().map(|p| p.thumbprint.clone()).unwrap_or_default(),
            agent_verified: identity.is_some(),
            trust_domain: identity.as_ref().map(|i| i.spiffe_id.trust_domain().to_owned()).unwrap_or_default(),
            agent_id: identity.as_ref().map(|i| i.spiffe_id.as_str().to_owned()).unwrap_or_default(),
        };
        Ok(VerifiedCall { principal_kind, principal_id, context })
    }

    fn check_sizes(&self, req: &CheckRequest) -> Result<(), Denial> {
        let limits = &self.settings.limits;
        let over = |what: &str, len: usize, max: usize| Denial::request(format!("`{what}` is {len} bytes, over the limit of {max}"));
        if let Some(c) = &req.context_json
            && c.len() > limits.max_context_bytes
        {
            return Err(over("context", c.len(), limits.max_context_bytes));
        }
        if let Some(e) = &req.entities_json
            && e.len() > limits.max_entities_bytes
        {
            return Err(over("entities", e.len(), limits.max_entities_bytes));
        }
        Ok(())
    }

    /// RFC 9449 §7 binding rules and the configured mode, then the proof itself.
    fn check_binding(
        &self,
        scheme: Scheme,
        at: &VerifiedAccessToken,
        token_hash: &TokenHash,
        req: &CheckRequest,
        now: i64,
    ) -> Result<Option<VerifiedProof>, Denial> {
        let mode = self.settings.dpop.mode;
        let jkt = match (scheme, at.bound_key.as_deref(), mode) {
            (Scheme::Dpop, None, _) => {
                return Err(Denial::token("token is not DPoP-bound (no `cnf.jkt`) but was presented with the `DPoP` scheme"));
            }
            (Scheme::Bearer, Some(_), _) => {
                return Err(Denial::token("DPoP-bound token presented with the `Bearer` scheme (RFC 9449 §7.2)"));
            }
            (_, Some(_), DpopMode::Off) => {
                return Err(Denial::token("DPoP-bound tokens are not accepted here (`dpop.mode` is `off`)"));
            }
            (Scheme::Bearer, None, DpopMode::Required) => {
                return Err(Denial::token("this service requires DPoP-bound tokens (`dpop.mode` is `required`)"));
            }
            (Scheme::Bearer, None, _) => return Ok(None),
            (Scheme::Dpop, Some(jkt), _) => jkt,
        };
        let Some(header) = req.credentials.dpop.as_deref() else {
            return Err(Denial::proof("the token is DPoP-bound, but no DPoP proof was presented"));
        };
        let Some(http) = req.http.as_ref() else {
            return Err(Denial::request("a DPoP proof can only be checked with the request's HTTP method and URI (`http`)"));
        };
        let ath = crate::jose::base64url::encode(token_hash);
        let check = ProofCheck { settings: &self.settings, now, method: &http.method, uri: &http.uri, ath: &ath, bound_key: jkt, nonces: self.nonces.as_ref() };
        dpop::verify(header, check, self.verifier.as_ref()).map(Some)
    }

    /// The agent identity, verified and bound to the token's actor and the proof key.
    fn check_identity(
        &self,
        req: &CheckRequest,
        at: &VerifiedAccessToken,
        proof: Option<&VerifiedProof>,
        now: i64,
    ) -> Result<Option<VerifiedIdentity>, Denial> {
        let actor = at.chain.current();
        let Some(token) = req.credentials.agent_identity.as_deref() else {
            if self.settings.identity.required && actor.is_some() {
                return Err(Denial::token("this service requires a verified agent identity (`Workload-Identity-Token`)"));
            }
            return Ok(None);
        };
        let Some(actor) = actor else {
            return Err(Denial::token("an agent identity was presented, but the token names no actor (`act`)"));
        };
        let id = identity::verify(token, &actor.sub, &self.settings, &self.trust, now, self.verifier.as_ref()).map_err(Denial::token)?;
        if let Some(key) = &id.bound_key {
            let Some(proof) = proof else {
                return Err(Denial::token(format!("agent identity is bound to key {}, but the call carries no DPoP proof", quote(key))));
            };
            if *key != proof.thumbprint {
                return Err(Denial::token(format!("agent identity key {} does not match the DPoP proof key {}", quote(key), quote(&proof.thumbprint))));
            }
        }
        Ok(Some(id))
    }

    /// The revocation ids this call presents, checked against the engine's own list and then
    /// the host's.
    fn check_revocation(&self, at: &VerifiedAccessToken, proof: Option<&VerifiedProof>, identity: Option<&VerifiedIdentity>, now: i64) -> Result<(), Denial> {
        let ids = revocation_ids(at, self.trust.issuer(&at.issuer).and_then(|ks| ks.get(&at.kid)).map(|k| k.thumbprint.as_str()), proof, identity);
        let canonical = ids.canonical();
        let now = u64::try_from(now).unwrap_or(0);
        let own = self.revocations.read().map(|l| Arc::clone(&l)).map_err(|_| Denial::new(Outcome::EngineError, "revocation list lock is poisoned"))?;
        if let Some(index) = own.lookup(&canonical, now) {
            return Err(ids.denial(index));
        }
        match self.state.check_revoked(&canonical, now) {
            RevocationAnswer::Clear => Ok(()),
            RevocationAnswer::Revoked(index) => Err(ids.denial(index)),
            RevocationAnswer::Unavailable(why) => Err(Denial::new(Outcome::Unavailable, format!("the revocation list could not be consulted: {why}"))),
        }
    }

    /// The token's entry in its status list (draft-ietf-oauth-status-list), when the issuer's
    /// policy asks for it. Returns what was checked, for `explain`.
    fn check_status(&self, at: &VerifiedAccessToken, now: i64) -> Result<Option<String>, Denial> {
        let Some(policy) = self.trust.issuer_policy(&at.issuer) else { return Ok(None) };
        let reference = match (&at.status, policy.status_list) {
            (_, StatusListMode::Off) | (None, StatusListMode::WhenPresent) => return Ok(None),
            (None, StatusListMode::Required) => {
                return Err(Denial::token(format!("issuer {} requires a status list reference (`status.status_list`) in its tokens", quote(&at.issuer))));
            }
            (Some(reference), _) => reference,
        };
        let list = self.status_list(&reference.uri, &policy.status_issuer, now)?;
        match list.status(reference.idx) {
            None => Err(Denial::token(format!(
                "access token status index {} is beyond the status list {} ({} entries)",
                reference.idx,
                quote(&reference.uri),
                list.len()
            ))),
            Some(value) => match status_list::describe(value) {
                None => Ok(Some(format!("valid: index {} of {}", reference.idx, quote(&reference.uri)))),
                Some(state) => Err(Denial::new(
                    Outcome::Revoked,
                    format!("access token is {state} in its status list {} (index {})", quote(&reference.uri), reference.idx),
                )),
            },
        }
    }

    /// The current status list at `uri`, verified, from this engine's cache or from the host.
    fn status_list(&self, uri: &str, issuer: &str, now: i64) -> Result<Arc<StatusList>, Denial> {
        let unavailable = |why: String| Denial::new(Outcome::Unavailable, format!("the status list {} is unavailable: {why}", quote(uri)));
        let skew = i64::try_from(self.settings.limits.clock_skew_secs).unwrap_or(0);
        let cached = self.status_lists.lock().ok().and_then(|c| c.get(uri).cloned());
        let answer = self.state.status_list(uri, cached.as_ref().map(|l| l.digest.as_str()));
        let list = match (answer, cached) {
            (StatusListAnswer::Unchanged, Some(list)) => list,
            (StatusListAnswer::Unchanged, None) => return Err(unavailable("the host answered `unchanged` for a list this engine does not hold".into())),
            (StatusListAnswer::Current(token), cached) => match cached {
                Some(list) if list.digest == status_list::digest(&token) => list,
                _ => {
                    let keys = self.trust.issuer(issuer).ok_or_else(|| unavailable(format!("no keys for its issuer {}", quote(issuer))))?;
                    let limits = &self.settings.limits;
                    let check = status_list::ListCheck {
                        uri,
                        issuer,
                        keys,
                        now,
                        skew_secs: skew,
                        max_token_bytes: limits.max_status_list_token_bytes,
                        max_list_bytes: limits.max_status_list_bytes,
                    };
                    let list = Arc::new(status_list::verify(&token, check, self.verifier.as_ref()).map_err(unavailable)?);
                    if let Ok(mut cache) = self.status_lists.lock() {
                        // A handful of lists per deployment; bound it all the same.
                        if cache.len() >= STATUS_LISTS_KEPT && !cache.contains_key(uri) {
                            cache.clear();
                        }
                        cache.insert(uri.to_owned(), Arc::clone(&list));
                    }
                    list
                }
            },
            (StatusListAnswer::Unavailable(why), _) => return Err(unavailable(why)),
        };
        if list.is_expired(now, skew) {
            return Err(unavailable(format!("the newest copy expired at {}", list.expires_at.unwrap_or_default())));
        }
        Ok(list)
    }

    /// Records the proof's single use with the host (RFC 9449 §11.1), for its acceptance window.
    fn remember_proof(&self, proof: &VerifiedProof, now: i64) -> Result<(), Denial> {
        // The proof passed the age check, so it stays acceptable until `iat + max_age`; one more
        // second covers the boundary second.
        let window = i64::try_from(self.settings.dpop.max_age_secs).unwrap_or(0);
        let acceptable_until = proof.issued_at.saturating_add(window).saturating_add(1);
        let ttl_secs = u32::try_from(acceptable_until.saturating_sub(now).max(1)).unwrap_or(u32::MAX);
        let jti_hash = dpop::jti_hash(&proof.jti);
        let answer = self.state.remember_proof(&ProofUse { key_thumbprint: &proof.thumbprint, jti_hash: &jti_hash, ttl_secs });
        match answer {
            ProofAnswer::Fresh => Ok(()),
            ProofAnswer::Replayed => Err(Denial::new(Outcome::Replayed, "DPoP proof `jti` was already used")),
            ProofAnswer::KeyLimit(limit) => Err(Denial::new(
                Outcome::RateLimited,
                format!("DPoP proof key {} already has {limit} live proofs, the most one key may have; retry later", quote(&proof.thumbprint)),
            )),
            ProofAnswer::Unavailable(why) => Err(Denial::new(Outcome::Unavailable, format!("the replay store could not be consulted: {why}"))),
        }
    }
}

/// What `verify` established about a call, for Cedar.
struct VerifiedCall {
    principal_kind: PrincipalKind,
    principal_id: String,
    context: ContextFacts,
}

/// Status lists an engine keeps verified at once.
const STATUS_LISTS_KEPT: usize = 16;

/// Everything of a call that a revocation can name: the token (by `jti`, of any issuer and of
/// its own), the user likewise, every actor, the issuer key (thumbprint, scoped and bare `kid`),
/// the proof key, and the workload identity with its bundle key.
fn revocation_ids(
    at: &VerifiedAccessToken,
    issuer_key_thumbprint: Option<&str>,
    proof: Option<&VerifiedProof>,
    identity: Option<&VerifiedIdentity>,
) -> CallIds {
    let mut ids = CallIds::default();
    ids.push(RevocationId::Token { issuer: None, jti: at.jti.clone() });
    ids.push(RevocationId::Token { issuer: Some(at.issuer.clone()), jti: at.jti.clone() });
    ids.push(RevocationId::User { issuer: None, sub: at.subject.clone() });
    ids.push(RevocationId::User { issuer: Some(at.issuer.clone()), sub: at.subject.clone() });
    for actor in at.chain.actors() {
        ids.push(RevocationId::Agent(actor.sub.clone()));
    }
    if let Some(id) = identity {
        ids.push(RevocationId::Agent(id.spiffe_id.as_str().to_owned()));
    }
    if let Some(t) = issuer_key_thumbprint {
        ids.push(RevocationId::Thumbprint(t.to_owned()));
    }
    ids.push(RevocationId::IssuerKid { issuer: at.issuer.clone(), kid: at.kid.clone() });
    ids.push(RevocationId::AnyKid(at.kid.clone()));
    if let Some(p) = proof {
        ids.push(RevocationId::Thumbprint(p.thumbprint.clone()));
    }
    if let Some(id) = identity {
        ids.push(RevocationId::Thumbprint(id.key_thumbprint.clone()));
        ids.push(RevocationId::DomainKid { trust_domain: id.spiffe_id.trust_domain().to_owned(), kid: id.kid.clone() });
        ids.push(RevocationId::AnyKid(id.kid.clone()));
        if let Some(bound) = &id.bound_key {
            ids.push(RevocationId::Thumbprint(bound.clone()));
        }
    }
    ids
}

fn resolve_now(now: Option<u64>) -> Result<i64, Denial> {
    let secs = match now {
        Some(n) => n,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| Denial::new(Outcome::EngineError, "the clock is before 1970"))?,
    };
    i64::try_from(secs).map_err(|_| Denial::request(format!("`now` {secs} is out of range")))
}

/// `Authorization: <scheme> <token>` with exactly one space (RFC 9110 §11.4 allows more; a strict
/// reading leaves no room for parser disagreements between proxy and engine).
fn parse_authorization(header: Option<&str>) -> Result<(Scheme, &str), Denial> {
    let header = match header {
        None => return Err(Denial::token("no access token was presented (`Authorization` header)")),
        Some(h) if h.trim().is_empty() => return Err(Denial::token("no access token was presented (`Authorization` header is empty)")),
        Some(h) => h,
    };
    let Some((scheme, token)) = header.split_once(' ') else {
        return Err(Denial::request("malformed `Authorization` header: expected `<scheme> <token>`"));
    };
    if token.is_empty() || token.starts_with(' ') {
        return Err(Denial::request("malformed `Authorization` header: expected `<scheme> <token>` separated by one space"));
    }
    if let Some(c) = first_non_token68(token) {
        // Proxies fold repeated headers into one with commas.
        if c == ',' {
            return Err(Denial::request("more than one `Authorization` credential was presented"));
        }
        return Err(Denial::request(format!(
            "malformed `Authorization` header: the credential has the character `{}`, which a token68 value cannot contain",
            c.escape_default()
        )));
    }
    if scheme.eq_ignore_ascii_case("DPoP") {
        Ok((Scheme::Dpop, token))
    } else if scheme.eq_ignore_ascii_case("Bearer") {
        Ok((Scheme::Bearer, token))
    } else {
        Err(Denial::request(format!("unsupported `Authorization` scheme {}; use `DPoP` or `Bearer`", quote(scheme))))
    }
}

/// The first character that makes `token` not a token68 (RFC 9110 §11.2):
/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn first_non_token68(token: &str) -> Option<char> {
    let body = token.trim_end_matches('=');
    let body_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/');
    if body.is_empty() {
        return token.chars().next();
    }
    body.chars().find(|c| !body_char(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_forms() {
        assert_eq!(parse_authorization(Some("Bearer abc")).map(|(s, t)| (s, t.to_owned())), Ok((Scheme::Bearer, "abc".into())));
        assert_eq!(parse_authorization(Some("dpop abc")).map(|(s, _)| s), Ok(Scheme::Dpop));
        let outcome = |h: Option<&str>| parse_authorization(h).err().map(|d| d.outcome);
        assert_eq!(outcome(None), Some(Outcome::InvalidToken));
        assert_eq!(outcome(Some("")), Some(Outcome::InvalidToken));
        assert_eq!(outcome(Some("Bearer  abc")), Some(Outcome::InvalidRequest));
        assert_eq!(outcome(Some("Bearer abc ")), Some(Outcome::InvalidRequest));
        assert_eq!(outcome(Some("Bearerabc")), Some(Outcome::InvalidRequest));
        assert_eq!(outcome(Some("Basic abc")), Some(Outcome::InvalidRequest));
        assert_eq!(outcome(Some("Bearer a, DPoP b")), Some(Outcome::InvalidRequest));
        assert_eq!(outcome(Some("Bearer {\"a\":1}")), Some(Outcome::InvalidRequest));
        assert_eq!(parse_authorization(Some("Bearer abc==")).map(|(_, t)| t.to_owned()), Ok("abc==".into()));
        assert_eq!(outcome(Some("Bearer ==")), Some(Outcome::InvalidRequest));
    }
}
