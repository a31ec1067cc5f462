"""Same lines in, same discrepancies out, whatever order the exports list them in."""

from __future__ import annotations

from rulecases import reconcile_case

from reconcile.config import Config


def _identical_pairs(order: int) -> dict[str, list[dict[str, object]]]:
    """Four identical Autotask lines and four identical HaloPSA lines, each 2.00 short."""
    autotask = [{"ref": f"A{i}", "qty": 2, "price": 10, "net": 20} for i in range(1, 5)]
    halopsa = [{"ref": f"H{i}", "qty": 2, "price": 10, "net": 18} for i in range(1, 5)]
    return {"autotask": autotask[::order], "halopsa": halopsa[::order]}


def test_findings_alike_in_everything_keep_their_ids_when_the_export_is_reordered() -> None:
    ids = []
    for order in (1, -1):
        found = reconcile_case(_identical_pairs(order), Config())
        assert found["rule"].to_list() == ["amount_mismatch"] * 4
        ids.append(
            {
                (refs_a[0], refs_h[0]): id_
                for id_, refs_a, refs_h in found.select(
                    "id", "autotask_refs", "halopsa_refs"
                ).iter_rows()
            }
        )
    assert ids[0] == ids[1]
    base = ids[0][("A1", "H1")]
    assert [ids[0][(f"A{i}", f"H{i}")] for i in range(1, 5)] == [
        base, f"{base}-2", f"{base}-3", f"{base}-4",
    ]  # fmt: skip
