//! The policy index: per call, Cedar evaluates only the policies whose scope can match the
//! request, so that a set of 10,000 policies costs about what its matching few cost.
//!
//! # Why the answer is exactly Cedar's
//!
//! Cedar evaluates a policy as `principal-scope && action-scope && resource-scope && conditions`
//! (`TemplateBody::condition` in cedar-policy-core), and `&&` short-circuits. A scope constraint
//! never errors: `==` and `is` compare, and `in` is `uid == e || uid's entity descends from e`
//! (an entity missing from the store descends from nothing; cedar-policy-core `eval_in`). So a
//! policy whose scope does not match the request is false with no error, and contributes nothing
//! to Cedar's answer: not to the decision (which needs a satisfied permit and no satisfied
//! forbid), not to the determining policies (the satisfied ones), not to the errors (only
//! evaluated conditions err). Evaluating every other policy — those whose scope matches — gives
//! the same decision, the same determining policies and the same errors.
//!
//! The index decides "scope matches" with the same rule, against the same entity store Cedar is
//! given for the call ([`PolicyIndex::select`]), so it never drops a policy Cedar would have found
//! satisfied or erroring. It does not need to be clever to be sound: its buckets only pick which
//! policies to *test*; every pick is then tested against the whole scope.
//!
//! Each policy is filed once, under the most selective thing its scope pins, in this order:
//!
//! | the scope pins | filed under | a call reaches that bucket through |
//! |---|---|---|
//! | `principal == E`, `in E`, `is T in E` | principal `E` | its principal, or any ancestor of it in the call's store |
//! | else `resource == E`, `in E`, `is T in E` | resource `E` | its resource, or any ancestor |
//! | else `action == A`, `action in [A, B]` | action `A` (and `B`) | its action, or any ancestor (action groups) |
//! | else `principal is T` | principal type `T` | its principal's type |
//! | else `resource is T` | resource type `T` | its resource's type |
//! | nothing (`principal, action, resource`) | unscoped | every call |
//!
//! A policy whose scope matches a call is reached through the bucket it is filed under: an `==`
//! pin matches only that entity, an `in` pin only it and its descendants (whose ancestors include
//! it), an `is` pin only that type. So per call the index walks only the unscoped policies and the
//! buckets of the call's principal, resource and action and their ancestors: with one rule set per
//! tenant or agent, about one tenant's rules. Templates are not supported by the engine (the
//! loader rejects them), but a linked policy would be indexed by its linked scope:
//! `principal_constraint()` resolves slots.

use cedar_policy::{ActionConstraint, Effect, Entities, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint, ResourceConstraint};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A principal or resource scope constraint.
#[derive(Debug, Clone)]
enum Scope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl From<PrincipalConstraint> for Scope {
    fn from(c: PrincipalConstraint) -> Self {
        match c {
            PrincipalConstraint::Any => Scope::Any,
            PrincipalConstraint::Eq(e) => Scope::Eq(e),
            PrincipalConstraint::In(e) => Scope::In(e),
            PrincipalConstraint::Is(t) => Scope::Is(t),
            PrincipalConstraint::IsIn(t, e) => Scope::IsIn(t, e),
        }
    }
}

impl From<ResourceConstraint> for Scope {
    fn from(c: ResourceConstraint) -> Self {
        match c {
            ResourceConstraint::Any => Scope::Any,
            ResourceConstraint::Eq(e) => Scope::Eq(e),
            ResourceConstraint::In(e) => Scope::In(e),
            ResourceConstraint::Is(t) => Scope::Is(t),
            ResourceConstraint::IsIn(t, e) => Scope::IsIn(t, e),
        }
    }
}

/// `uid in e` exactly as Cedar evaluates it: equal, or `uid`'s entity in `entities` descends from
/// `e`.
fn is_in(uid: &EntityUid, e: &EntityUid, entities: &Entities) -> bool {
    uid == e || entities.is_ancestor_of(e, uid)
}

impl Scope {
    fn matches(&self, uid: &EntityUid, entities: &Entities) -> bool {
        match self {
            Scope::Any => true,
            Scope::Eq(e) => uid == e,
            Scope::In(e) => is_in(uid, e, entities),
            Scope::Is(t) => uid.type_name() == t,
            Scope::IsIn(t, e) => uid.type_name() == t && is_in(uid, e, entities),
        }
    }
}

fn action_matches(constraint: &ActionConstraint, action: &EntityUid, entities: &Entities) -> bool {
    match constraint {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => action == a,
        ActionConstraint::In(list) => list.iter().any(|a| is_in(action, a, entities)),
    }
}

/// One indexed policy.
#[derive(Debug)]
struct Entry {
    policy: Policy,
    permit: bool,
    principal: Scope,
    action: ActionConstraint,
    resource: Scope,
}

impl Entry {
    fn matches(&self, request: &ScopeRequest<'_>) -> bool {
        self.principal.matches(request.principal, request.entities)
            && action_matches(&self.action, request.action, request.entities)
            && self.resource.matches(request.resource, request.entities)
    }
}

/// The buckets of one dimension: positions in `PolicyIndex::entries`, ascending.
#[derive(Debug, Default)]
struct Buckets {
    by_entity: HashMap<EntityUid, Vec<u32>>,
    by_type: HashMap<EntityTypeName, Vec<u32>>,
}

impl Buckets {
    fn file_entity(&mut self, e: &EntityUid, at: u32) {
        let bucket = self.by_entity.entry(e.clone()).or_default();
        // `action in [A, A]` files a policy once.
        if bucket.last() != Some(&at) {
            bucket.push(at);
        }
    }

    /// Every bucket a call with this entity reaches: its type, itself and each ancestor.
    fn reachable<'a>(&'a self, uid: &EntityUid, entities: &'a Entities, lists: &mut Vec<&'a [u32]>) {
        if let Some(list) = self.by_type.get(uid.type_name()) {
            lists.push(list);
        }
        if self.by_entity.is_empty() {
            return;
        }
        if let Some(list) = self.by_entity.get(uid) {
            lists.push(list);
        }
        if let Some(ancestors) = entities.ancestors(uid) {
            lists.extend(ancestors.filter_map(|a| self.by_entity.get(a)).map(Vec::as_slice));
        }
    }
}

/// The entity a principal or resource scope pins, if any.
fn pinned_entity(scope: &Scope) -> Option<&EntityUid> {
    match scope {
        Scope::Eq(e) | Scope::In(e) | Scope::IsIn(_, e) => Some(e),
        Scope::Any | Scope::Is(_) => None,
    }
}

/// The three scope parts of a Cedar request and the store its `in` constraints are decided
/// against (the one Cedar is given).
#[derive(Debug, Clone, Copy)]
pub struct ScopeRequest<'a> {
    /// The principal.
    pub principal: &'a EntityUid,
    /// The action.
    pub action: &'a EntityUid,
    /// The resource.
    pub resource: &'a EntityUid,
    /// The call's entity store.
    pub entities: &'a Entities,
}

/// Which policies a call gives Cedar.
#[derive(Debug)]
pub enum Selection {
    /// Every policy (or every permit): most of the set matches, so building a smaller set would
    /// cost more than evaluating the rest.
    All,
    /// Just these (shared with the other calls that select the same policies).
    Some(Arc<PolicySet>),
}

/// The most policies the sets kept for reuse may hold together (a set of 10,000 policies selects a
/// few per call; the bound keeps hostile scope variety from growing memory).
const BUILT_SETS_BUDGET: usize = 16_384;

/// Sets built for earlier calls, by the positions they hold. Calls repeat a few scope shapes, and
/// building a set clones each policy (its text too): for a small set that cost more than
/// evaluating the policies did.
#[derive(Debug, Default)]
struct BuiltSets {
    sets: HashMap<(bool, Vec<u32>), Arc<PolicySet>>,
    /// Policies held by `sets`, summed.
    policies: usize,
}

/// The policy set indexed by scope.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    entries: Vec<Entry>,
    permits: usize,
    /// Policies whose scope pins nothing: every call evaluates them.
    unscoped: Vec<u32>,
    principal: Buckets,
    action: Buckets,
    resource: Buckets,
    built: Mutex<BuiltSets>,
}

impl PolicyIndex {
    /// Indexes every policy of `set`.
    pub fn new(set: &PolicySet) -> Self {
        let mut index = PolicyIndex::default();
        for policy in set.policies() {
            let at = u32::try_from(index.entries.len()).unwrap_or(u32::MAX);
            let entry = Entry {
                permit: policy.effect() == Effect::Permit,
                principal: policy.principal_constraint().into(),
                action: policy.action_constraint(),
                resource: policy.resource_constraint().into(),
                policy: policy.clone(),
            };
            index.file(&entry, at);
            index.permits += usize::from(entry.permit);
            index.entries.push(entry);
        }
        index
    }

    /// Files a policy under the most selective thing its scope pins (the module's table).
    fn file(&mut self, entry: &Entry, at: u32) {
        if let Some(e) = pinned_entity(&entry.principal) {
            self.principal.file_entity(e, at);
        } else if let Some(e) = pinned_entity(&entry.resource) {
            self.resource.file_entity(e, at);
        } else if let ActionConstraint::Eq(a) = &entry.action {
            self.action.file_entity(a, at);
        } else if let ActionConstraint::In(list) = &entry.action {
            for a in list {
                self.action.file_entity(a, at);
            }
        } else if let Scope::Is(t) = &entry.principal {
            self.principal.by_type.entry(t.clone()).or_default().push(at);
        } else if let Scope::Is(t) = &entry.resource {
            self.resource.by_type.entry(t.clone()).or_default().push(at);
        } else {
            self.unscoped.push(at);
        }
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Positions of the policies (permits only, with `permits_only`) whose scope matches, in set
    /// order.
    fn matching(&self, request: &ScopeRequest<'_>, permits_only: bool) -> Vec<u32> {
        let mut lists: Vec<&[u32]> = vec![&self.unscoped];
        self.principal.reachable(request.principal, request.entities, &mut lists);
        self.action.reachable(request.action, request.entities, &mut lists);
        self.resource.reachable(request.resource, request.entities, &mut lists);
        let mut found: Vec<u32> = lists
            .iter()
            .flat_map(|list| list.iter().copied())
            .filter(|&at| self.entries.get(at as usize).is_some_and(|e| (!permits_only || e.permit) && e.matches(request)))
            .collect();
        found.sort_unstable();
        // `action in [A, G]` with `A in G` reaches a policy through two buckets.
        found.dedup();
        found
    }

    /// How many policies of the whole set this request's scope matches (what `explain` reports).
    pub fn matching_count(&self, request: &ScopeRequest<'_>) -> usize {
        self.matching(request, false).len()
    }

    /// The policies Cedar must evaluate for this request to give exactly its answer over the whole
    /// set (or over its permits alone, with `permits_only`), and how many that is.
    pub fn select(&self, request: &ScopeRequest<'_>, permits_only: bool) -> (Selection, usize) {
        let found = self.matching(request, permits_only);
        let whole = if permits_only { self.permits } else { self.entries.len() };
        // Past half the set, building a smaller one costs more than evaluating the rest.
        if found.len() * 2 > whole {
            return (Selection::All, found.len());
        }
        let count = found.len();
        let key = (permits_only, found);
        if let Some(set) = self.built.lock().ok().and_then(|built| built.sets.get(&key).cloned()) {
            return (Selection::Some(set), count);
        }
        let mut set = PolicySet::new();
        for at in &key.1 {
            if let Some(entry) = self.entries.get(*at as usize) {
                // Ids are unique in the indexed set, so adding cannot fail; were it to, the whole
                // set is the safe answer.
                if set.add(entry.policy.clone()).is_err() {
                    return (Selection::All, count);
                }
            }
        }
        let set = Arc::new(set);
        if let Ok(mut built) = self.built.lock() {
            if built.policies + count > BUILT_SETS_BUDGET {
                *built = BuiltSets::default();
            }
            if count <= BUILT_SETS_BUDGET {
                built.policies += count;
                built.sets.insert(key, Arc::clone(&set));
            }
        }
        (Selection::Some(set), count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    const SCHEMALESS_ENTITIES: &str = r#"[
        {"uid": {"type": "Agent", "id": "a1"}, "attrs": {}, "parents": [{"type": "Team", "id": "blue"}]},
        {"uid": {"type": "Team", "id": "blue"}, "attrs": {}, "parents": [{"type": "Org", "id": "acme"}]},
        {"uid": {"type": "Doc", "id": "d1"}, "attrs": {}, "parents": [{"type": "Folder", "id": "f1"}]},
        {"uid": {"type": "Action", "id": "read"}, "attrs": {}, "parents": [{"type": "Action", "id": "readish"}]},
        {"uid": {"type": "Action", "id": "readish"}, "attrs": {}, "parents": []}
    ]"#;

    fn uid(text: &str) -> EntityUid {
        EntityUid::from_str(text).unwrap()
    }

    fn ids(index: &PolicyIndex, request: &ScopeRequest<'_>) -> Vec<String> {
        let found = index.matching(request, false);
        found.iter().map(|at| index.entries[*at as usize].policy.id().to_string()).collect()
    }

    #[test]
    fn each_scope_form_is_found_through_its_bucket_and_only_when_it_matches() {
        let set = PolicySet::from_str(
            r#"
            @id("any") permit(principal, action, resource);
            @id("p-eq") permit(principal == Agent::"a1", action, resource);
            @id("p-eq-other") permit(principal == Agent::"a2", action, resource);
            @id("p-in-team") permit(principal in Team::"blue", action, resource);
            @id("p-in-org") forbid(principal in Org::"acme", action, resource);
            @id("p-in-self") permit(principal in Agent::"a1", action, resource);
            @id("p-is") permit(principal is Agent, action, resource);
            @id("p-is-user") permit(principal is User, action, resource);
            @id("p-is-in") permit(principal is Agent in Org::"acme", action, resource);
            @id("p-is-in-wrong-type") permit(principal is User in Org::"acme", action, resource);
            @id("a-eq") permit(principal, action == Action::"read", resource);
            @id("a-eq-other") permit(principal, action == Action::"write", resource);
            @id("a-in-group") permit(principal, action in [Action::"write", Action::"readish"], resource);
            @id("a-in-twice") permit(principal, action in [Action::"read", Action::"readish"], resource);
            @id("r-in-folder") permit(principal, action, resource in Folder::"f1");
            @id("r-in-other") permit(principal, action, resource in Folder::"f2");
            @id("all-three") forbid(principal == Agent::"a1", action == Action::"read", resource == Doc::"d1") when { 1 > 2 };
            @id("two-of-three") forbid(principal == Agent::"a1", action == Action::"read", resource == Doc::"d2");
            "#,
        )
        .unwrap();
        let set = PolicySet::from_policies(set.policies().map(|p| p.new_id(cedar_policy::PolicyId::new(p.annotation("id").unwrap())))).unwrap();
        let index = PolicyIndex::new(&set);
        let entities = Entities::from_json_str(SCHEMALESS_ENTITIES, None).unwrap();
        let (p, a, r) = (uid(r#"Agent::"a1""#), uid(r#"Action::"read""#), uid(r#"Doc::"d1""#));
        let mut got = ids(&index, &ScopeRequest { principal: &p, action: &a, resource: &r, entities: &entities });
        got.sort();
        let mut want =
            vec!["any", "p-eq", "p-in-team", "p-in-org", "p-in-self", "p-is", "p-is-in", "a-eq", "a-in-group", "a-in-twice", "r-in-folder", "all-three"];
        want.sort();
        assert_eq!(got, want);

        // The same principal, absent from the store: no ancestors, so only `==`, `is` and `in`
        // itself hold.
        let empty = Entities::empty();
        let mut got = ids(&index, &ScopeRequest { principal: &p, action: &a, resource: &r, entities: &empty });
        got.sort();
        assert_eq!(got, ["a-eq", "a-in-twice", "all-three", "any", "p-eq", "p-in-self", "p-is"]);
    }

    #[test]
    fn most_of_the_set_matching_evaluates_the_whole_set() {
        let set = PolicySet::from_str("permit(principal, action, resource);\npermit(principal == User::\"u\", action, resource);").unwrap();
        let index = PolicyIndex::new(&set);
        let (p, a, r) = (uid(r#"User::"u""#), uid(r#"Action::"read""#), uid(r#"Doc::"d1""#));
        let request = ScopeRequest { principal: &p, action: &a, resource: &r, entities: &Entities::empty() };
        assert!(matches!(index.select(&request, false), (Selection::All, 2)));
        let other = uid(r#"User::"v""#);
        let (selection, n) = index.select(&ScopeRequest { principal: &other, ..request }, false);
        assert_eq!(n, 1);
        let Selection::Some(set) = selection else { panic!("one of two is not past half") };
        assert_eq!(set.policies().count(), 1);
        // The next call with the same selection gets the same set, not a rebuilt one.
        let Selection::Some(again) = index.select(&ScopeRequest { principal: &other, ..request }, false).0 else { panic!("same request") };
        assert!(Arc::ptr_eq(&set, &again));
    }
}
