"""The member service's own Prometheus metrics (the chassis records every entrypoint's)."""

from prometheus_client import Counter

# Each is an answer (or a refusal to answer) about a person the caller has no say over: the
# alert MemberIdNumberProbing watches it.
ID_NUMBER_CONFLICTS_OUTSIDE_SCOPE = Counter(
    "member_id_number_conflicts_outside_scope",
    "Registrations and ID number changes naming an ID number registered outside the caller's scope, "
    "by outcome (revealed: answered 409; refused: 429, the caller's daily allowance used up)",
    ["outcome"],
)
