//! Generated multi-tenant deployments for the policy index: a schema, schema-valid policy sets
//! that mix every scope form (`==`, `in`, `is`, `is … in`, action lists and groups, unscoped),
//! permits and forbids, conditions that can err on well-typed input, and calls whose entities
//! build random hierarchies. Shared by the differential test (`tests/policy_index.rs`), the
//! scale bench (`benches/policy_scale.rs`) and the `policy_index` fuzz target, which drives it
//! with the fuzzer's bytes instead of a seed.
//!
//! Standalone (std only) so that each of those can include it by path.

#![allow(dead_code)]

use std::fmt::Write as _;

/// The schema: tenants, teams, users and agents in them, folders nesting in tenants, documents in
/// folders; four document actions, two of them in the action group `docs`. The context is the
/// engine's full author contract.
pub const SCHEMA: &str = r#"
entity Tenant;
entity Team in [Tenant];
entity User in [Tenant, Team];
entity Agent in [Tenant, Team];
entity Folder in [Folder, Tenant];
entity Document in [Folder] { owner: User, public: Bool, size: Long };

type AgentgateContext = {
  user: User,
  scopes: Set<String>,
  delegation: { depth: Long, chain: Set<String>, actors: Set<{ id: String, position: Long }> },
  token: { issuer: String, id: String, client_id: String, age_secs: Long, lifetime_secs: Long, expires_in_secs: Long },
  proof: { bound: Bool, method: String, uri: String, key: String },
  agent: { verified: Bool, trust_domain: String, id: String },
};

action "docs";
action "doc:read" in ["docs"] appliesTo { principal: [Agent, User], resource: [Document, Folder], context: AgentgateContext };
action "doc:write" in ["docs"] appliesTo { principal: [Agent, User], resource: [Document, Folder], context: AgentgateContext };
action "doc:delete" appliesTo { principal: [Agent, User], resource: [Document, Folder], context: AgentgateContext };
action "doc:share" appliesTo { principal: [Agent, User], resource: [Document, Folder], context: AgentgateContext };
"#;

/// The actions a call may name.
pub const ACTIONS: [&str; 4] = ["doc:read", "doc:write", "doc:delete", "doc:share"];
/// The scopes policies ask for and tokens carry.
pub const SCOPES: [&str; 3] = ["docs.read", "docs.write", "docs.admin"];

/// Where random choices come from: a seed (tests, benches) or the fuzzer's bytes (then zeros).
#[derive(Debug, Clone)]
pub struct Gen<'a> {
    bytes: &'a [u8],
    state: u64,
}

impl<'a> Gen<'a> {
    /// SplitMix64 from `seed`.
    pub fn seeded(seed: u64) -> Gen<'static> {
        Gen { bytes: &[], state: seed }
    }

    /// The fuzzer's bytes, one per choice; zeros once they run out.
    pub fn from_bytes(bytes: &'a [u8]) -> Gen<'a> {
        Gen { bytes, state: 0 }
    }

    fn next(&mut self) -> u64 {
        if let Some((first, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            return u64::from(*first);
        }
        if self.state == 0 {
            return 0;
        }
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent` %.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// True once the fuzzer's bytes are spent (a seeded generator never is).
    pub fn exhausted(&self) -> bool {
        self.bytes.is_empty() && self.state == 0
    }
}

/// How many of each entity a tenant has, and how many tenants.
#[derive(Debug, Clone, Copy)]
pub struct Universe {
    /// Tenants.
    pub tenants: usize,
    /// Agents per tenant.
    pub agents: usize,
    /// Users per tenant.
    pub users: usize,
    /// Teams per tenant.
    pub teams: usize,
    /// Folders per tenant.
    pub folders: usize,
    /// Documents per tenant.
    pub documents: usize,
}

impl Universe {
    /// A universe so small that random scopes often match a random call: the differential tests.
    pub const SMALL: Universe = Universe { tenants: 2, agents: 2, users: 2, teams: 2, folders: 3, documents: 3 };

    /// Tenant `t`'s entity ids.
    pub fn tenant(t: usize) -> String {
        format!("t{t}")
    }
    pub fn agent(t: usize, i: usize) -> String {
        format!("spiffe://agents.example/t{t}/agent-{i}")
    }
    pub fn user(t: usize, i: usize) -> String {
        format!("t{t}-user-{i}")
    }
    pub fn team(t: usize, i: usize) -> String {
        format!("t{t}-team-{i}")
    }
    pub fn folder(t: usize, i: usize) -> String {
        format!("t{t}-folder-{i}")
    }
    pub fn document(t: usize, i: usize) -> String {
        format!("t{t}-doc-{i}")
    }
}

fn uid(ty: &str, id: &str) -> String {
    format!("{ty}::\"{id}\"")
}

/// A random principal scope within tenant `t`.
fn principal_scope(g: &mut Gen<'_>, u: &Universe, t: usize) -> String {
    let tenant = uid("Tenant", &Universe::tenant(t));
    match g.below(9) {
        0 => "principal".into(),
        1 => format!("principal == {}", uid("Agent", &Universe::agent(t, g.below(u.agents)))),
        2 => format!("principal == {}", uid("User", &Universe::user(t, g.below(u.users)))),
        3 => format!("principal in {tenant}"),
        4 => format!("principal in {}", uid("Team", &Universe::team(t, g.below(u.teams)))),
        5 => "principal is Agent".into(),
        6 => "principal is User".into(),
        7 => format!("principal is Agent in {tenant}"),
        _ => format!("principal is User in {}", uid("Team", &Universe::team(t, g.below(u.teams)))),
    }
}

fn action_scope(g: &mut Gen<'_>) -> String {
    let action = |g: &mut Gen<'_>| uid("Action", ACTIONS[g.below(ACTIONS.len())]);
    match g.below(5) {
        0 => "action".into(),
        1 | 2 => format!("action == {}", action(g)),
        3 => format!("action in [{}, {}]", action(g), action(g)),
        _ => "action in Action::\"docs\"".into(),
    }
}

fn resource_scope(g: &mut Gen<'_>, u: &Universe, t: usize) -> String {
    match g.below(8) {
        0 => "resource".into(),
        1 => format!("resource == {}", uid("Document", &Universe::document(t, g.below(u.documents)))),
        2 => format!("resource == {}", uid("Folder", &Universe::folder(t, g.below(u.folders)))),
        3 => format!("resource in {}", uid("Folder", &Universe::folder(t, g.below(u.folders)))),
        4 => format!("resource in {}", uid("Tenant", &Universe::tenant(t))),
        5 => "resource is Document".into(),
        6 => format!("resource is Folder in {}", uid("Tenant", &Universe::tenant(t))),
        _ => format!("resource is Document in {}", uid("Folder", &Universe::folder(t, g.below(u.folders)))),
    }
}

/// A condition; some err on well-typed input (overflow), which Cedar reports and the index must
/// report alike.
fn condition(g: &mut Gen<'_>, u: &Universe, t: usize) -> String {
    match g.below(10) {
        0 | 1 => String::new(),
        2 => format!(" when {{ context.scopes.contains(\"{}\") }}", SCOPES[g.below(SCOPES.len())]),
        3 => " when { resource is Document && resource.public }".into(),
        4 => " when { resource is Document && resource.owner == context.user }".into(),
        5 => format!(" unless {{ context.delegation.depth > {} }}", g.below(3)),
        6 => " when { context.token.lifetime_secs * 4611686018427387904 > 0 }".into(),
        7 => " when { resource is Document && resource.size + 9223372036854775800 > 0 }".into(),
        8 => format!(" when {{ context.delegation.chain.contains(\"{}\") }}", Universe::agent(t, g.below(u.agents))),
        _ => format!(" when {{ context.user in {} }}", uid("Tenant", &Universe::tenant(t))),
    }
}

/// One random policy about tenant `t`, with id `id`.
pub fn random_policy(g: &mut Gen<'_>, u: &Universe, t: usize, id: &str) -> String {
    let effect = if g.chance(25) { "forbid" } else { "permit" };
    let principal = principal_scope(g, u, t);
    let action = action_scope(g);
    let resource = resource_scope(g, u, t);
    let when = condition(g, u, t);
    format!("@id(\"{id}\")\n{effect} ({principal}, {action}, {resource}){when};\n")
}

/// `n` random policies over the universe (any scope form, unscoped ones included).
pub fn random_policies(g: &mut Gen<'_>, u: &Universe, n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let t = g.below(u.tenants);
        text.push_str(&random_policy(g, u, t, &format!("p{i}")));
    }
    text
}

/// A multi-tenant set of about `n` policies as a service with one rule set per tenant writes it:
/// every tenant gets ten rules of mixed scope (`principal ==`, `principal in` a team or the
/// tenant, `is … in`, `resource in` a folder or the tenant, action lists and the `docs` group),
/// and the whole set shares five unscoped or type-scoped rules. The tenants grow with `n`; each
/// tenant's rules stay ten. Deterministic.
pub fn tenant_policies(n: usize) -> (String, Universe) {
    let u = Universe { tenants: (n / 10).max(1), agents: 4, users: 4, teams: 2, folders: 3, documents: 4 };
    let mut text = String::from(
        r#"@id("global-depth")
forbid (principal, action, resource) when { context.delegation.depth > 2 };
@id("global-public-read")
permit (principal, action == Action::"doc:read", resource is Document) when { resource.public && context.scopes.contains("docs.read") };
@id("global-owner")
permit (principal is User, action in Action::"docs", resource is Document) when { resource.owner == principal };
@id("global-no-agent-delete")
forbid (principal is Agent, action == Action::"doc:delete", resource) unless { context.scopes.contains("docs.admin") };
@id("global-admin-share")
permit (principal, action == Action::"doc:share", resource) when { context.scopes.contains("docs.admin") };
"#,
    );
    for t in 0..u.tenants {
        let tenant = uid("Tenant", &Universe::tenant(t));
        let a = |i| uid("Agent", &Universe::agent(t, i));
        let team = |i| uid("Team", &Universe::team(t, i));
        let folder = |i| uid("Folder", &Universe::folder(t, i));
        let _ = write!(
            text,
            r#"@id("t{t}-agent0-read")
permit (principal == {a0}, action == Action::"doc:read", resource in {f0}) when {{ context.scopes.contains("docs.read") }};
@id("t{t}-agent1-write")
permit (principal == {a1}, action in [Action::"doc:read", Action::"doc:write"], resource in {f1}) when {{ context.scopes.contains("docs.write") }};
@id("t{t}-team0-docs")
permit (principal in {team0}, action in Action::"docs", resource in {tenant}) when {{ context.delegation.depth <= 1 }};
@id("t{t}-team1-no-delete")
forbid (principal in {team1}, action == Action::"doc:delete", resource);
@id("t{t}-agents-read")
permit (principal is Agent in {tenant}, action == Action::"doc:read", resource is Document in {f2}) when {{ resource.public }};
@id("t{t}-users-all")
permit (principal is User in {tenant}, action, resource in {tenant}) when {{ context.scopes.contains("docs.write") }};
@id("t{t}-folder0-locked")
forbid (principal, action == Action::"doc:write", resource == {f0}) unless {{ context.scopes.contains("docs.admin") }};
@id("t{t}-share")
permit (principal in {tenant}, action == Action::"doc:share", resource in {f1}) when {{ context.user in {tenant} }};
@id("t{t}-agent2-limit")
forbid (principal == {a2}, action, resource in {tenant}) when {{ context.token.lifetime_secs > 3600 }};
@id("t{t}-agent3-owner")
permit (principal == {a3}, action in [Action::"doc:read", Action::"doc:share"], resource is Document in {tenant}) when {{ resource.owner == context.user }};
"#,
            a0 = a(0),
            a1 = a(1),
            a2 = a(2),
            a3 = a(3),
            team0 = team(0),
            team1 = team(1),
            f0 = folder(0),
            f1 = folder(1),
            f2 = folder(2),
        );
    }
    (text, u)
}

/// `n` policies indexing cannot narrow: every one scoped to the same action and principal type
/// (`principal is Agent, action == doc:read`) and told apart only by its `when` condition.
pub fn unindexable_policies(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "@id(\"agent-rule-{i}\")\npermit (principal is Agent, action == Action::\"doc:read\", resource is Document) when {{ context.delegation.chain.contains(\"{}\") && resource.size < {} }};\n",
                Universe::agent(i / 4, i % 4),
                1000 + i
            )
        })
        .collect()
}

/// One call: who, what, on what, with which entities.
#[derive(Debug, Clone)]
pub struct GenCall {
    /// The user (`sub`).
    pub user: String,
    /// The acting agent (`act.sub`), if any: then the principal.
    pub agent: Option<String>,
    /// Token scopes.
    pub scopes: Vec<String>,
    /// Cedar action id.
    pub action: String,
    /// Resource type (`Document` or `Folder`).
    pub resource_type: String,
    /// Resource id.
    pub resource_id: String,
    /// The `entities` JSON document.
    pub entities: String,
}

fn entity_json(ty: &str, id: &str, parents: &[(String, String)], attrs: &str) -> String {
    let parents: Vec<String> = parents.iter().map(|(t, i)| format!(r#"{{"type":"{t}","id":"{i}"}}"#)).collect();
    format!(r#"{{"uid":{{"type":"{ty}","id":"{id}"}},"attrs":{attrs},"parents":[{}]}}"#, parents.join(","))
}

/// A random call about a random tenant, with random memberships (principal in teams and tenants,
/// possibly another tenant's; folders nested or not) and document attributes.
pub fn random_call(g: &mut Gen<'_>, u: &Universe) -> GenCall {
    let t = g.below(u.tenants);
    let other = g.below(u.tenants);
    let user = Universe::user(t, g.below(u.users));
    let agent = if g.chance(70) { Some(Universe::agent(t, g.below(u.agents))) } else { None };
    let scopes = SCOPES.iter().filter(|_| g.chance(50)).map(|s| (*s).to_owned()).collect();
    let action = ACTIONS[g.below(ACTIONS.len())].to_owned();
    let mut entities = Vec::new();
    let membership = |g: &mut Gen<'_>| -> Vec<(String, String)> {
        let mut parents = Vec::new();
        if g.chance(60) {
            parents.push(("Tenant".to_owned(), Universe::tenant(if g.chance(80) { t } else { other })));
        }
        if g.chance(50) {
            parents.push(("Team".to_owned(), Universe::team(t, g.below(u.teams))));
        }
        parents
    };
    if g.chance(85) {
        let parents = membership(g);
        entities.push(entity_json("User", &user, &parents, "{}"));
    }
    if let Some(agent) = &agent
        && g.chance(85)
    {
        let parents = membership(g);
        entities.push(entity_json("Agent", agent, &parents, "{}"));
    }
    for team in 0..u.teams {
        if g.chance(50) {
            entities.push(entity_json("Team", &Universe::team(t, team), &[("Tenant".to_owned(), Universe::tenant(t))], "{}"));
        }
    }
    // Folders: 0 in the tenant; the others in folder 0, in the tenant, or loose.
    for f in 0..u.folders {
        let parents = match (f, g.below(3)) {
            (0, _) | (_, 0) => vec![("Tenant".to_owned(), Universe::tenant(t))],
            (_, 1) => vec![("Folder".to_owned(), Universe::folder(t, 0))],
            _ => Vec::new(),
        };
        if g.chance(80) {
            entities.push(entity_json("Folder", &Universe::folder(t, f), &parents, "{}"));
        }
    }
    let (resource_type, resource_id) = if g.chance(75) {
        let id = Universe::document(t, g.below(u.documents));
        let folder = Universe::folder(t, g.below(u.folders));
        let owner = Universe::user(if g.chance(80) { t } else { other }, g.below(u.users));
        let size = [0, 5, 100, 2000][g.below(4)];
        let attrs = format!(r#"{{"owner":{{"__entity":{{"type":"User","id":"{owner}"}}}},"public":{},"size":{size}}}"#, g.chance(50));
        entities.push(entity_json("Document", &id, &[("Folder".to_owned(), folder)], &attrs));
        ("Document".to_owned(), id)
    } else {
        ("Folder".to_owned(), Universe::folder(t, g.below(u.folders)))
    };
    GenCall { user, agent, scopes, action, resource_type, resource_id, entities: format!("[{}]", entities.join(",")) }
}
