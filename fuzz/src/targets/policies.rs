//! - `policy_index` (policies.rs): the policy index against Cedar over the whole set. The input
//!   drives the generator of `tests/support/policy_gen.rs` one byte per choice: a schema-valid
//!   set of up to 64 policies over a small multi-tenant universe (every scope form, permits and
//!   forbids, conditions that can err), then up to eight calls with random entity hierarchies.
//!   Asserts: the generated set loads (the generator writes only valid sets); every call gets the
//!   same answer — decision, determining policies, errors, reason, step-up scope — with the index
//!   and without it.

#[path = "../../../tests/support/policy_gen.rs"]
mod policy_gen;

use agentgate_engine::EntityRef;
use agentgate_engine::authorizer::context::ContextFacts;
use agentgate_engine::authorizer::{Authorizer, AuthzCall, PrincipalKind, SourceText};
use policy_gen::{Gen, Universe};

pub fn policy_index(data: &[u8]) {
    let mut g = Gen::from_bytes(data);
    let n = 1 + g.below(64);
    let policies = policy_gen::random_policies(&mut g, &Universe::SMALL, n);
    let file = |name: &str, text: &str| SourceText { name: name.to_owned(), text: text.to_owned() };
    let authorizer = Authorizer::new(&[file("generated.cedar", &policies)], &file("schema.cedarschema", policy_gen::SCHEMA))
        .unwrap_or_else(|e| panic!("the generator wrote a set Cedar rejects:\n{e}\n{policies}"));
    for _ in 0..8 {
        let call = policy_gen::random_call(&mut g, &Universe::SMALL);
        let facts = ContextFacts {
            user: call.user.clone(),
            scopes: call.scopes.clone(),
            chain: call.agent.iter().cloned().collect(),
            lifetime_secs: [1, 300, 3600][g.below(3)],
            ..ContextFacts::default()
        };
        let resource = EntityRef { type_name: call.resource_type.clone(), id: call.resource_id.clone() };
        let (principal_kind, principal_id) = match &call.agent {
            Some(agent) => (PrincipalKind::Agent, agent.as_str()),
            None => (PrincipalKind::User, call.user.as_str()),
        };
        let authz =
            AuthzCall { principal_kind, principal_id, action: &call.action, resource: &resource, facts: &facts, input: None, entities: Some(&call.entities) };
        assert_eq!(authorizer.authorize(&authz), authorizer.authorize_without_index(&authz), "{call:?}\n{policies}");
        if g.exhausted() {
            break;
        }
    }
}
