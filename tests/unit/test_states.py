"""The operation × key-state table of KMS-REFERENCE.md §3, cell by cell."""

from __future__ import annotations

import pytest

from trent.node.model.errors import KmsError
from trent.node.model.key import KeyRecord
from trent.node.model.states import PENDING_DELETION_STATES, KeyState, OpClass, check_state

ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

S = KeyState
COLUMNS = (S.ENABLED, S.DISABLED, S.PENDING_DELETION, S.PENDING_REPLICA_DELETION, S.PENDING_IMPORT, S.CREATING,
           S.UPDATING)

# Cells: "ok" allowed; D DisabledException; PD pending deletion; NPD not pending deletion; PI pending import;
# CR creating; UP updating; UO UnsupportedOperationException. Rows in COLUMNS order.
TABLE: dict[OpClass, tuple[str, ...]] = {
    OpClass.CRYPTO:            ("ok", "D", "PD", "PD", "PI", "CR", "ok"),
    OpClass.ANY:               ("ok", "ok", "ok", "ok", "ok", "ok", "ok"),
    OpClass.METADATA:          ("ok", "ok", "PD", "PD", "ok", "ok", "ok"),
    OpClass.ENABLE_DISABLE:    ("ok", "ok", "PD", "PD", "PI", "CR", "UP"),
    OpClass.SCHEDULE_DELETION: ("ok", "ok", "PD", "PD", "ok", "ok", "UP"),
    OpClass.CANCEL_DELETION:   ("NPD", "NPD", "ok", "ok", "NPD", "NPD", "NPD"),
    OpClass.ROTATION_SETTINGS: ("ok", "D", "PD", "PD", "UO", "CR", "ok"),
    OpClass.ROTATION_STATUS:   ("ok", "ok", "ok", "ok", "UO", "ok", "ok"),
    OpClass.ROTATE_ON_DEMAND:  ("ok", "D", "PD", "PD", "PI", "CR", "UP"),
    OpClass.REPLICATE:         ("ok", "D", "PD", "PD", "PI", "CR", "UP"),
    OpClass.UPDATE_PRIMARY:    ("ok", "D", "PD", "PD", "PI", "CR", "ok"),
}

CODES = {
    "D": "DisabledException", "PD": "KMSInvalidStateException", "NPD": "KMSInvalidStateException",
    "PI": "KMSInvalidStateException", "CR": "KMSInvalidStateException", "UP": "KMSInvalidStateException",
    "UO": "UnsupportedOperationException",
}
MESSAGES = {
    "D": f"{ARN} is disabled.", "NPD": f"{ARN} is not pending deletion.", "PI": f"{ARN} is pending import.",
    "CR": f"{ARN} is creating.", "UP": f"{ARN} is updating.",
}

CELLS = [(op, state, cell) for op, row in TABLE.items() for state, cell in zip(COLUMNS, row, strict=True)]


def test_table_covers_every_operation_class() -> None:
    assert set(TABLE) == set(OpClass)


@pytest.mark.parametrize(("op", "state", "cell"), CELLS, ids=[f"{o.value}-{s.value}" for o, s, _ in CELLS])
def test_cell(op: OpClass, state: KeyState, cell: str) -> None:
    if cell == "ok":
        check_state(op, state, ARN)
        return
    with pytest.raises(KmsError) as info:
        check_state(op, state, ARN)
    err = info.value
    assert (err.code, err.status) == (CODES[cell], 400)
    assert err.message is not None and ARN in err.message
    if cell in MESSAGES:
        assert err.message == MESSAGES[cell]
    if cell == "PD" and state is KeyState.PENDING_DELETION:
        assert err.message == f"{ARN} is pending deletion."
    if cell == "PD" and state is KeyState.PENDING_REPLICA_DELETION:
        assert err.message.startswith(f"{ARN} is pending ") and err.message.endswith("deletion.")


def test_pending_deletion_states() -> None:
    assert frozenset({KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION}) == PENDING_DELETION_STATES


def test_state_values_are_the_model_enum() -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("kms")
    assert {s.value for s in KeyState} == set(model.shape_for("KeyState").enum)


def test_enabled_flag_is_true_only_in_enabled_state() -> None:
    for state in KeyState:
        key = KeyRecord(key_id="1234abcd-12ab-34cd-56ef-1234567890ab", region="us-east-1", account="111122223333",
                        created=0.0, state=state)
        assert key.enabled is (state is KeyState.ENABLED)
        assert key.pending_deletion is (state in PENDING_DELETION_STATES)
