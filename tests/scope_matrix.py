"""The scope matrix's table (issue 16, item 7): for every operation of the public API, which
callers may act on the data of one district and which must be refused.

tests/test_scope_matrix.py reads the running gateway's /openapi.json and calls every operation
under /api/v1 as every caller below, on a data set of the district 370112 (Licheng) made once by
the admin through the API, with a second data set in 370113 (Changqing) that the "_out" callers
hold. A row here is all a new route needs to join the matrix; an operation of the document with
no row (and not excluded below, with its reason) fails the test by name.

Callers ("role classes"): an admin; each narrowed role once inside the data's scope and once
outside it; a handler, whose scope (departments) holds none of this data (the data's appeals are
routed to a department of 370112 whose handler is an account of its own, `dept_handler`, named
in bodies but not a caller). Each row says which of them succeed (`ok`: 2xx), which are answered but must not see the
data (`narrowed`: 2xx, none of the data's records in the body: lists whose filter narrows rather
than refuses), and everyone else must be refused: 403 or 404, never 2xx, never 5xx. A call
without a token is 401 for every operation.

What fills a call:
- path parameters by name from the data set (`unit_id` -> the unit, `organization_id` -> the
  organization, ...; `PATH_PARAMETERS`), or a row's `path`;
- the body: the request schema's required fields, filled by field name from the data set or fresh
  valid values (`tests/test_scope_matrix.py: FIELD_VALUES`), then a row's `body` laid over them;
- a row's `query`.
In `path`, `query` and `body`, "{key}" is the data set's value for key (of its own type when it is
the whole string), so a row names data, not ids.

`fresh`: the operation changes the state of what it acts on (dissolves, closes, moves a transfer
on), so every successful call gets a target of its own made just before it (the name of a maker
in the test file), and the refused callers share one; the callers "inside" are bound to that
target (a secretary of the new organization, the worker who is the new member, the manager of
the new station), so that a refusal of theirs is a refusal on scope, not on a stranger's record.

`sees`: for lists, who must find the data's record (`record`) on an unfiltered list; every other
caller who may list must not. `items` names how each record of an unfiltered list is checked
against the caller's own scope (`division`, `member`, `transfer`)."""

from dataclasses import dataclass, field

# ---- callers ------------------------------------------------------------------------------

ADMIN = "admin"
OPERATOR_IN, OPERATOR_OUT = "operator_in", "operator_out"  # of 370112 (the data's), of 370113
SECRETARY_IN, SECRETARY_OUT = "secretary_in", "secretary_out"  # of the data's organization, of 370113's
MANAGER_IN, MANAGER_OUT = "station_manager_in", "station_manager_out"  # of the data's station, of 370113's
WORKER_IN, WORKER_OUT = "worker_in", "worker_out"  # the data's member, 370113's member
HANDLER = "handler"  # departments: no record of this data is theirs

CALLERS = (ADMIN, OPERATOR_IN, OPERATOR_OUT, SECRETARY_IN, SECRETARY_OUT, MANAGER_IN, MANAGER_OUT,
           WORKER_IN, WORKER_OUT, HANDLER)
NARROWED_CALLERS = CALLERS[1:]

EVERYONE = frozenset(CALLERS)
ONLY_ADMIN = frozenset({ADMIN})
DISTRICT = frozenset({ADMIN, OPERATOR_IN})  # units, organizations, instructors, coverage
ANY_OPERATOR = frozenset({ADMIN, OPERATOR_IN, OPERATOR_OUT})  # reference data of the platform
ORGANIZATION_SIDE = DISTRICT | {SECRETARY_IN}  # manage members, act for a transfer's side
MEMBER_READERS = ORGANIZATION_SIDE | {WORKER_IN}  # read a member, their transfers, check them in
STATION_RUNNERS = DISTRICT | {MANAGER_IN}  # supplies, visits, activities, utilisation
WORKERS = frozenset({WORKER_IN, WORKER_OUT})  # any worker uses any station: visits, sign-ups
# An appeal's readers: its division's operators (staff) and the worker who raised it (the data's).
APPEAL_READERS = DISTRICT | {WORKER_IN}


@dataclass(frozen=True)
class Row:
    ok: frozenset
    narrowed: frozenset = frozenset()
    path: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)
    fresh: str | None = None
    sees: frozenset | None = None  # lists: who finds the data's record
    record: str | None = None  # lists: the data set's key of that record
    items: str | None = None  # lists: how a listed record is checked against the caller's scope

    def __post_init__(self):
        assert self.ok <= EVERYONE and self.narrowed <= EVERYONE and not self.ok & self.narrowed


# Path parameters by name: the data set's key that fills them.
PATH_PARAMETERS = {
    "unit_id": "unit", "organization_id": "organization", "instructor_id": "instructor", "member_id": "member",
    "transfer_id": "transfer", "station_id": "station", "activity_id": "activity", "sign_up_id": "sign_up",
    "notification_id": "notification", "user_id": "user", "item": "supply_item", "year": "calendar_year",
    "appeal_id": "appeal", "department_id": "department", "category": "category", "entry_id": "block_entry",
    "import_id": "import",
}

# Operations the matrix does not call, each with its reason.
EXCLUDED = {
    "issue_access_token_api_v1_auth_token_post":
        "the way in: it takes a password, not a token, so no role or scope applies (its refusals and lockouts: "
        "services/gateway/tests/test_login_abuse.py)",
    "event_stream_api_v1_events_stream_get":
        "an endless text/event-stream, not one response; the live stream's scoping is checked below over the "
        "WebSocket, which applies the same filter (stream.client_filter), and in services/gateway/tests/test_stream_*",
    "metrics_metrics_get": "operations probe outside /api/v1: Prometheus scrapes it without a token by design",
    "healthz_healthz_get": "operations probe outside /api/v1: Kubernetes probes it without a token by design",
    "readyz_readyz_get": "operations probe outside /api/v1: Kubernetes probes it without a token by design",
    "start_import_api_v1_imports_post":
        "a multipart upload, not a JSON body: who may import which ledger, rows outside the caller's scope rejected, "
        "and every role refused are tested in tests/test_e2e_ledgers.py",
    "revoke_api_key_api_v1_open311_api_keys__key_id__delete":
        "admins only, on a key issued just before (the matrix has no maker of API keys): every other role's 403, "
        "401 without a token and 404 for an unknown key are tested in services/gateway/tests/test_open311_http.py",
}

MATRIX: dict[str, Row] = {
    # Ledgers: the data's import is the admin's, and an import is its starter's alone (and admins').
    "list_imports_api_v1_imports_get": Row(EVERYONE),
    "get_import_api_v1_imports__import_id__get": Row(ONLY_ADMIN),
    "import_errors_api_v1_imports__import_id__errors_xlsx_get": Row(ONLY_ADMIN),
    "ledger_template_api_v1_templates__name__get": Row(EVERYONE, path={"name": "units.xlsx"}),
    "export_api_v1_exports__name__get": Row(DISTRICT, path={"name": "units.xlsx"}, query={"division": "{district}"}),
    # ---- accounts ----
    "me_api_v1_me_get": Row(EVERYONE),
    "create_user_api_v1_users_post": Row(ONLY_ADMIN, body={"role": "worker", "scope": "{member}"}),
    "list_users_api_v1_users_get": Row(ONLY_ADMIN),
    "get_user_api_v1_users__user_id__get": Row(ONLY_ADMIN),
    "update_user_api_v1_users__user_id__patch": Row(ONLY_ADMIN, body={"active": True}),

    # ---- units ----
    "register_unit_api_v1_units_post": Row(DISTRICT),
    "list_units_api_v1_units_get": Row(DISTRICT, query={"division": "{district}"}, sees=DISTRICT, record="unit",
                                       items="division"),
    "register_units_api_v1_units_bulk_post": Row(DISTRICT),
    "get_unit_api_v1_units__unit_id__get": Row(DISTRICT),
    "update_unit_api_v1_units__unit_id__patch": Row(DISTRICT, body={"employees": 12}),
    "deregister_unit_api_v1_units__unit_id__deregister_post": Row(DISTRICT, fresh="unit"),

    # ---- organizations ----
    "create_organization_api_v1_organizations_post": Row(DISTRICT, body={"kind": "joint_branch", "formation": "joint"}),
    "list_organizations_api_v1_organizations_get": Row(DISTRICT, query={"division": "{district}"}, sees=DISTRICT,
                                                       record="organization", items="division"),
    "get_organization_api_v1_organizations__organization_id__get": Row(ORGANIZATION_SIDE),
    "update_organization_api_v1_organizations__organization_id__patch": Row(DISTRICT, body={"star_rating": 4}),
    "attach_unit_api_v1_organizations__organization_id__units_post": Row(DISTRICT, fresh="organization_and_unit"),
    "detach_unit_api_v1_organizations__organization_id__units__unit_id__delete":
        Row(DISTRICT, fresh="organization_with_unit"),
    "dissolve_organization_api_v1_organizations__organization_id__dissolve_post": Row(DISTRICT, fresh="organization"),

    # ---- instructors ----
    "create_instructor_api_v1_instructors_post": Row(DISTRICT),
    "list_instructors_api_v1_instructors_get": Row(DISTRICT, query={"division": "{district}"}, sees=DISTRICT,
                                                   record="instructor", items="division"),
    "get_instructor_api_v1_instructors__instructor_id__get": Row(DISTRICT),
    "assign_instructor_api_v1_units__unit_id__instructor_put": Row(DISTRICT, fresh="unit"),
    "unassign_instructor_api_v1_units__unit_id__instructor_delete": Row(DISTRICT, fresh="unit_with_instructor"),

    # ---- coverage ----
    "get_coverage_api_v1_coverage_get": Row(DISTRICT, query={"division": "{district}"}),
    "coverage_breakdown_api_v1_coverage_breakdown_get": Row(DISTRICT, query={"division": "{district}"},
                                                            items="division"),
    # The data's unit has 3 full members and no standalone organization: it should establish one.
    "coverage_alerts_api_v1_coverage_alerts_get": Row(DISTRICT, query={"division": "{district}"}, sees=DISTRICT,
                                                      record="unit", items="division"),
    "reconcile_coverage_api_v1_coverage_reconcile_post": Row(ONLY_ADMIN, query={"repair": "false"}),

    # ---- members ----
    "register_member_api_v1_members_post": Row(ORGANIZATION_SIDE),
    # A worker's list is their own record whatever the filter (member.access.ensure_filters_in_scope).
    "list_members_api_v1_members_get": Row(MEMBER_READERS, narrowed=frozenset({WORKER_OUT}),
                                           query={"organization_id": "{organization}"}, sees=MEMBER_READERS,
                                           record="member", items="member"),
    "find_member_api_v1_members_lookup_post": Row(MEMBER_READERS, body={"id_number": "{id_number}"}),
    "get_member_api_v1_members__member_id__get": Row(MEMBER_READERS),
    "update_member_api_v1_members__member_id__patch": Row(ORGANIZATION_SIDE, body={"occupation": "courier"}),
    "promote_member_api_v1_members__member_id__promote_post": Row(ORGANIZATION_SIDE, fresh="member",
                                                                  body={"stage": "activist"}),
    "check_in_api_v1_members__member_id__check_ins_post": Row(MEMBER_READERS),
    "reveal_id_number_api_v1_members__member_id__id_number_reveal_post": Row(DISTRICT),
    "list_audit_log_api_v1_admin_audit_log_get": Row(ONLY_ADMIN, query={"member_id": "{member}"}),

    # ---- transfers (within the district: from the data's organization to another of 370112) ----
    "request_transfer_api_v1_transfers_post": Row(MEMBER_READERS, fresh="member"),
    # A filter naming the other side narrows what a side sees rather than being refused.
    "list_transfers_api_v1_transfers_get": Row(MEMBER_READERS, narrowed=frozenset({OPERATOR_OUT, SECRETARY_OUT,
                                                                                   WORKER_OUT}),
                                               query={"organization_id": "{organization}"}, sees=MEMBER_READERS,
                                               record="transfer", items="transfer"),
    "get_transfer_api_v1_transfers__transfer_id__get": Row(MEMBER_READERS),
    "approve_transfer_api_v1_transfers__transfer_id__approve_post": Row(ORGANIZATION_SIDE, fresh="transfer_requested"),
    # The receiving side is the district's operator: the data's secretary is the sending side's.
    "receive_transfer_api_v1_transfers__transfer_id__receive_post": Row(DISTRICT, fresh="transfer_approved"),
    "report_in_api_v1_transfers__transfer_id__report_in_post": Row(DISTRICT | {WORKER_IN}, fresh="transfer_received"),
    "reject_transfer_api_v1_transfers__transfer_id__reject_post": Row(ORGANIZATION_SIDE, fresh="transfer_requested"),
    # The requester (here the admin), the member or an admin withdraws; the sides reject instead.
    "cancel_transfer_api_v1_transfers__transfer_id__cancel_post": Row(frozenset({ADMIN, WORKER_IN}),
                                                                      fresh="transfer_requested"),

    # ---- stations: where a station is and when it is open is public (service_station.access) ----
    "register_station_api_v1_stations_post": Row(DISTRICT),
    "list_stations_api_v1_stations_get": Row(EVERYONE, query={"division": "{district}"}, sees=EVERYONE,
                                             record="station"),
    "get_station_api_v1_stations__station_id__get": Row(EVERYONE),
    "update_station_api_v1_stations__station_id__patch": Row(STATION_RUNNERS, body={"capacity": 8}),
    # Station managers run their stations but do not close them.
    "close_station_api_v1_stations__station_id__close_post": Row(DISTRICT, fresh="station"),
    "set_supply_api_v1_stations__station_id__supplies__item__put": Row(STATION_RUNNERS),
    "adjust_supply_api_v1_stations__station_id__supplies__item__adjust_post": Row(STATION_RUNNERS),
    "record_visit_api_v1_stations__station_id__visits_post": Row(STATION_RUNNERS | WORKERS),
    "get_utilisation_api_v1_stations__station_id__utilisation_get": Row(STATION_RUNNERS,
                                                                         query={"from": "{today}", "to": "{today}"}),
    "schedule_activity_api_v1_stations__station_id__activities_post": Row(STATION_RUNNERS),
    "list_activities_api_v1_stations__station_id__activities_get": Row(EVERYONE, sees=EVERYONE, record="activity"),
    "get_activity_api_v1_stations__station_id__activities__activity_id__get": Row(EVERYONE),
    "cancel_activity_api_v1_stations__station_id__activities__activity_id__cancel_post":
        Row(STATION_RUNNERS, fresh="activity"),
    "sign_up_api_v1_stations__station_id__activities__activity_id__sign_ups_post": Row(STATION_RUNNERS | WORKERS),
    # The data's worker is the member signed up (by the admin).
    "cancel_sign_up_api_v1_stations__station_id__activities__activity_id__sign_ups__sign_up_id__delete":
        Row(STATION_RUNNERS | {WORKER_IN}, fresh="sign_up"),
    "get_calendar_api_v1_calendar_get": Row(EVERYONE),
    # The package's own 2004 loaded again: the same calendar afterwards.
    "load_calendar_year_api_v1_calendar__year__put": Row(ONLY_ADMIN, body={"holidays": "{calendar_holidays}",
                                                                           "workdays": "{calendar_workdays}"}),

    # ---- notifications: the data's is a transfer awaiting the sending side's approval ----
    "list_notifications_api_v1_notifications_get": Row(EVERYONE, sees=ORGANIZATION_SIDE, record="notification"),
    "mark_read_api_v1_notifications__notification_id__read_post": Row(ORGANIZATION_SIDE),

    # ---- reference data and administration ----
    "list_divisions_api_v1_divisions_get": Row(ANY_OPERATOR),
    "register_division_api_v1_divisions_post": Row(ONLY_ADMIN, body={"code": "{spare_division}"}),
    "list_dead_letters_api_v1_admin_dead_letters_get": Row(ONLY_ADMIN),
    "replay_dead_letters_api_v1_admin_dead_letters_replay_post":
        Row(ONLY_ADMIN, body={"message_ids": ["no-such-dead-letter"]}),  # replays nothing
    "list_industries_api_v1_industries_get": Row(ANY_OPERATOR),
    "register_industry_api_v1_industries_post": Row(ONLY_ADMIN, body={"code": "scope-matrix", "gb4754": "I"}),
    # Open311 applications' API keys (the /open311/v2/ routes take keys, not tokens, and are not
    # in /openapi.json: services/gateway/tests/test_open311_http.py, tests/test_e2e_open311.py).
    "issue_api_key_api_v1_open311_api_keys_post": Row(ONLY_ADMIN),
    "list_api_keys_api_v1_open311_api_keys_get": Row(ONLY_ADMIN),

    # ---- appeals (the appeal service's access.py): the data's appeal is raised by the data's
    # worker in 370112 and routed to the data's department; fresh ones too ----
    # Anyone signed in raises an appeal, anywhere: here an anonymous hazard report (no contact
    # details, no account on it, no route: it stays out of the data's department and lists).
    "submit_appeal_api_v1_appeals_post": Row(EVERYONE, body={"category": "hazard", "submitter": {"kind": "anonymous"}}),
    # Lists narrow: an operator to their division (a filter outside it is refused), a handler to
    # their departments, anyone else to what they raised.
    "list_appeals_api_v1_appeals_get": Row(APPEAL_READERS, narrowed=frozenset({SECRETARY_IN, SECRETARY_OUT, MANAGER_IN,
                                                                               MANAGER_OUT, WORKER_OUT, HANDLER}),
                                           query={"division": "{district}"}, sees=APPEAL_READERS, record="appeal"),
    # Nearby reports are the public view of open appeals: anyone signed in (FixMyStreet).
    "nearby_appeals_api_v1_appeals_nearby_get": Row(EVERYONE, query={"near": "117.05,36.68"}),
    "get_appeal_api_v1_appeals__appeal_id__get": Row(APPEAL_READERS),
    "accept_appeal_api_v1_appeals__appeal_id__accept_post": Row(DISTRICT, fresh="appeal"),
    "assign_appeal_api_v1_appeals__appeal_id__assign_post": Row(DISTRICT, fresh="accepted_appeal",
                                                                body={"handler": "{dept_handler}"}),
    "resolve_appeal_api_v1_appeals__appeal_id__resolve_post": Row(DISTRICT, fresh="accepted_appeal"),
    # Only the person who raised it rates it; they, its division's operators and admins reopen it.
    "rate_appeal_api_v1_appeals__appeal_id__rate_post": Row(frozenset({WORKER_IN}), fresh="resolved_appeal",
                                                            body={"rating": 5, "solved": True}),
    "reopen_appeal_api_v1_appeals__appeal_id__reopen_post": Row(APPEAL_READERS, fresh="resolved_appeal"),
    "reject_appeal_api_v1_appeals__appeal_id__reject_post": Row(DISTRICT, fresh="appeal"),
    "close_appeal_api_v1_appeals__appeal_id__close_post": Row(DISTRICT, fresh="resolved_appeal"),
    "merge_appeal_api_v1_appeals__appeal_id__merge_post": Row(DISTRICT, fresh="appeal",
                                                              body={"into": "{main_appeal}"}),
    "add_note_api_v1_appeals__appeal_id__notes_post": Row(DISTRICT),
    "register_department_api_v1_departments_post": Row(DISTRICT, body={"division": "{district}"}),
    # Departments in scope: an operator's division's (a filter outside it is refused), a handler's own.
    "list_departments_api_v1_departments_get": Row(DISTRICT, narrowed=frozenset({HANDLER}),
                                                   query={"division": "{district}"}, sees=DISTRICT,
                                                   record="department"),
    "get_department_api_v1_departments__department_id__get": Row(DISTRICT),
    "set_route_api_v1_appeal_routing_put": Row(DISTRICT, body={"category": "{category}", "division": "{district}",
                                                                "department_id": "{department}"}),
    # The routing table in scope: the other district's operator sees theirs, none of this one.
    "list_routes_api_v1_appeal_routing_get": Row(DISTRICT, narrowed=frozenset({OPERATOR_OUT})),
    "list_categories_api_v1_appeal_categories_get": Row(EVERYONE),
    # The category's defaults (appeal.domain) set again: nothing changes.
    "set_category_api_v1_appeal_categories__category__put": Row(ONLY_ADMIN, body={"sla_working_days": 5,
                                                                                  "anonymous_allowed": False}),
    "block_submitter_api_v1_appeal_blocklist_post": Row(ONLY_ADMIN, body={"kind": "device"}),
    "list_blocklist_api_v1_appeal_blocklist_get": Row(ONLY_ADMIN),
    "unblock_submitter_api_v1_appeal_blocklist__entry_id__delete": Row(ONLY_ADMIN, fresh="block_entry"),
}

# Calls on the caller's own records with one record (or filter) of someone else's in the body or
# the query: each must be refused although the same call without it succeeds (the matrix's `ok`).
# Keyed by operationId ("#..." tells two cases of one operation apart); "{other_<key>}" is 370113's
# data, "{to_organization}" another organization of the data's district (not the secretary's).
MIXED = {
    "create_organization_api_v1_organizations_post": {"body": {"kind": "joint_branch", "formation": "joint",
                                                               "unit_ids": ["{other_unit}"]}},
    "update_organization_api_v1_organizations__organization_id__patch": {"body": {"parent_id": "{other_organization}"}},
    "attach_unit_api_v1_organizations__organization_id__units_post": {"body": {"unit_id": "{other_unit}"}},
    "assign_instructor_api_v1_units__unit_id__instructor_put": {"body": {"instructor_id": "{other_instructor}"}},
    "update_unit_api_v1_units__unit_id__patch": {"body": {"division": "{other_street}"}},
    "update_station_api_v1_stations__station_id__patch": {"body": {"division": "{other_street}"}},
    "register_member_api_v1_members_post": {"body": {"organization_id": "{other_organization}"}},
    "request_transfer_api_v1_transfers_post": {"body": {"member_id": "{other_member}"}},
    "list_members_api_v1_members_get": {"query": {"division": "{other_district}", "organization_id": None}},
    "list_members_api_v1_members_get#organization": {"query": {"organization_id": "{other_organization}"}},
    "get_coverage_api_v1_coverage_get": {"query": {"division": "{other_district}"}},
    "coverage_breakdown_api_v1_coverage_breakdown_get": {"query": {"division": "37"}},  # wider than the scope
    "coverage_alerts_api_v1_coverage_alerts_get": {"query": {"division": "{other_street}"}},
    # A secretary, within their own district, on an organization that is not theirs.
    "register_member_api_v1_members_post#secretary": {"caller": SECRETARY_IN,
                                                      "body": {"organization_id": "{to_organization}"}},
    "list_members_api_v1_members_get#secretary": {"caller": SECRETARY_IN,
                                                  "query": {"organization_id": "{to_organization}"}},
    # A worker records their own visits and signs themselves up, no one else.
    "record_visit_api_v1_stations__station_id__visits_post#worker": {
        "caller": WORKER_IN, "body": {"visitor": "member", "member_id": "{other_member}"}},
    "sign_up_api_v1_stations__station_id__activities__activity_id__sign_ups_post#worker": {
        "caller": WORKER_IN, "body": {"member_id": "{other_member}"}},
    # A station manager runs the station, but its division and manager are the operators'.
    "update_station_api_v1_stations__station_id__patch#manager": {"caller": MANAGER_IN,
                                                                  "body": {"manager": "somebody-else"}},
    # An operator on their own appeal, merging it into another district's, or listing another's.
    "merge_appeal_api_v1_appeals__appeal_id__merge_post": {"body": {"into": "{other_appeal}"}},
    "list_appeals_api_v1_appeals_get": {"query": {"division": "{other_district}"}},
    "list_departments_api_v1_departments_get": {"query": {"division": "{other_district}"}},
    # A rule for another district's division, naming their own department.
    "set_route_api_v1_appeal_routing_put": {"body": {"division": "{other_district}"}},
}

# Targets, or records a body names, in a state that stops the operation (a deregistered unit, a
# dissolved organization, a closed station, an ended transfer, ...): whoever the row refuses must
# still be refused, 403 or 404, and not told the state (409) or the records behind it (422 naming
# them): a refusal comes before the state. Keyed by operationId ("#..." tells cases of one
# operation apart): the maker of such a target (in the test file; None: the data set's own) and
# the body, when the call names the stopped record in it.
STALE = {
    "get_unit_api_v1_units__unit_id__get": {"target": "deregistered_unit"},
    "update_unit_api_v1_units__unit_id__patch": {"target": "deregistered_unit"},
    "deregister_unit_api_v1_units__unit_id__deregister_post": {"target": "deregistered_unit"},
    "assign_instructor_api_v1_units__unit_id__instructor_put": {"target": "deregistered_unit"},
    "unassign_instructor_api_v1_units__unit_id__instructor_delete": {"target": "deregistered_unit"},
    "get_organization_api_v1_organizations__organization_id__get": {"target": "dissolved_organization"},
    "update_organization_api_v1_organizations__organization_id__patch": {"target": "dissolved_organization"},
    "attach_unit_api_v1_organizations__organization_id__units_post": {"target": "dissolved_organization"},
    "detach_unit_api_v1_organizations__organization_id__units__unit_id__delete": {"target": "dissolved_organization"},
    "dissolve_organization_api_v1_organizations__organization_id__dissolve_post": {"target": "dissolved_organization"},
    "register_member_api_v1_members_post": {"target": "dissolved_organization"},  # naming it in the body
    "promote_member_api_v1_members__member_id__promote_post": {"target": "full_member", "body": {"stage": "full"}},
    # The data's member, with an organization that is no online branch named as theirs.
    "update_member_api_v1_members__member_id__patch#not_an_online_branch":
        {"target": None, "body": {"online_branch_id": "{to_organization}"}},
    "get_transfer_api_v1_transfers__transfer_id__get": {"target": "cancelled_transfer"},
    "approve_transfer_api_v1_transfers__transfer_id__approve_post": {"target": "cancelled_transfer"},
    "receive_transfer_api_v1_transfers__transfer_id__receive_post": {"target": "cancelled_transfer"},
    "report_in_api_v1_transfers__transfer_id__report_in_post": {"target": "cancelled_transfer"},
    "report_in_api_v1_transfers__transfer_id__report_in_post#receiver_dissolved":
        {"target": "received_transfer_to_a_dissolved_organization"},
    "report_in_api_v1_transfers__transfer_id__report_in_post#unit_deregistered":
        {"target": "received_transfer_to_a_deregistered_unit"},
    # The data's member (with a transfer open already), to an organization dissolved since.
    "request_transfer_api_v1_transfers_post#destination_dissolved":
        {"target": "dissolved_organization", "body": {"to_organization_id": "{organization}"}},
    "reject_transfer_api_v1_transfers__transfer_id__reject_post": {"target": "cancelled_transfer"},
    "cancel_transfer_api_v1_transfers__transfer_id__cancel_post": {"target": "cancelled_transfer"},
    "update_station_api_v1_stations__station_id__patch": {"target": "closed_station"},
    "close_station_api_v1_stations__station_id__close_post": {"target": "closed_station"},
    "set_supply_api_v1_stations__station_id__supplies__item__put": {"target": "closed_station"},
    "adjust_supply_api_v1_stations__station_id__supplies__item__adjust_post": {"target": "closed_station"},
    "record_visit_api_v1_stations__station_id__visits_post": {"target": "closed_station"},
    "get_utilisation_api_v1_stations__station_id__utilisation_get": {"target": "closed_station"},
    "schedule_activity_api_v1_stations__station_id__activities_post": {"target": "closed_station"},
    "cancel_activity_api_v1_stations__station_id__activities__activity_id__cancel_post":
        {"target": "cancelled_activity"},
    "sign_up_api_v1_stations__station_id__activities__activity_id__sign_ups_post": {"target": "cancelled_activity"},
    "sign_up_api_v1_stations__station_id__activities__activity_id__sign_ups_post#station_closed":
        {"target": "closed_station"},
    "cancel_activity_api_v1_stations__station_id__activities__activity_id__cancel_post#station_closed":
        {"target": "closed_station"},
    "get_activity_api_v1_stations__station_id__activities__activity_id__get#station_closed":
        {"target": "closed_station"},
    "cancel_sign_up_api_v1_stations__station_id__activities__activity_id__sign_ups__sign_up_id__delete":
        {"target": "cancelled_sign_up"},
    "get_appeal_api_v1_appeals__appeal_id__get": {"target": "rejected_appeal"},
    "accept_appeal_api_v1_appeals__appeal_id__accept_post": {"target": "rejected_appeal"},
    "assign_appeal_api_v1_appeals__appeal_id__assign_post": {"target": "rejected_appeal"},
    "resolve_appeal_api_v1_appeals__appeal_id__resolve_post": {"target": "rejected_appeal"},
    "rate_appeal_api_v1_appeals__appeal_id__rate_post": {"target": "rejected_appeal"},
    "reopen_appeal_api_v1_appeals__appeal_id__reopen_post": {"target": "rejected_appeal"},
    "reject_appeal_api_v1_appeals__appeal_id__reject_post": {"target": "rejected_appeal"},
    "close_appeal_api_v1_appeals__appeal_id__close_post": {"target": "rejected_appeal"},
    "merge_appeal_api_v1_appeals__appeal_id__merge_post": {"target": "rejected_appeal"},
    "add_note_api_v1_appeals__appeal_id__notes_post": {"target": "rejected_appeal"},
}
