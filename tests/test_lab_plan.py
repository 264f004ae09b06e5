"""The lab's plan as data: the tuning protocol's selection, the rows every comparison and claim names, the budget
pairs, the registered plan's hash, and the deterministic checks (which must fail when their identity is broken)."""

import json

import pytest
import torch

from mlpvision.lab import Settings, plan, plan_hash, plan_markdown
from mlpvision.lab.checks import CHECKS, mixer_patch_shuffle, mlp_permutation
from mlpvision.lab.context import AUG, FINE_TUNING, LAB_MODELS, SEG_MODELS, PlanContext, half
from mlpvision.lab.plan import needed_families
from mlpvision.lab.seed_claims import SEED_CLAIMS, seed_claims
from mlpvision.lab.tuning import CONFIRM_SEED, LADDER, START, TUNE_SEED, resolve
from mlpvision.models import create_model


def _write(results, run, val, diverged=False):
    (results / "runs").mkdir(parents=True, exist_ok=True)
    r = {"key": run.key, "label": run.label, "seed": run.seed, "history": [{"epoch": 1, "val_top1": val}],
         "summary": {}, "num_classes": 10, **({"diverged": "loss became nan"} if diverged else {})}  # fmt: skip
    (results / "runs" / f"{run.key}.json").write_text(json.dumps(r))


def _family(key):
    return [f for f in PlanContext(Settings(), 28).families() if f.key == key]


def _lr(run):
    return run.train.get("lr", 2e-3)


def test_tuning_extends_the_ladder_while_the_best_rate_is_at_an_end_and_then_chooses_it(tmp_path):
    scores = {2e-4: 60.0, 6e-4: 70.0, 2e-3: 80.0, 6e-3: 85.0, 2e-2: 90.0, 6e-2: 87.0, 2e-1: 10.0}
    fam = _family("plain MLP")
    t = resolve(fam, tmp_path)
    assert [_lr(r) for r in t.pending] == list(START) and "plain MLP" not in t.rates
    assert all(r.seed == TUNE_SEED for r in t.pending)
    for _ in range(3):  # the best so far is the highest rate tried: one rung more, until it is inside
        for run in resolve(fam, tmp_path).pending:
            _write(tmp_path, run, scores[_lr(run)])
    t = resolve(fam, tmp_path)
    assert t.rates["plain MLP"] == 2e-2 and sorted(t.scores["plain MLP"]) == [2e-3, 6e-3, 2e-2, 6e-2]
    assert not t.pending and LADDER[0] < min(t.scores["plain MLP"])


def test_two_close_rates_are_told_apart_on_a_second_seed(tmp_path):
    fam = _family("ResMLP")
    first = {2e-3: 85.0, 6e-3: 86.0, 2e-2: 80.0}  # 6e-3 leads by less than CONFIRM points
    for run in resolve(fam, tmp_path).pending:
        _write(tmp_path, run, first[_lr(run)])
    t = resolve(fam, tmp_path)
    second = [r for r in t.pending if r.seed == CONFIRM_SEED]
    assert "ResMLP" not in t.rates and sorted(_lr(r) for r in second) == [2e-3, 6e-3]
    for run in second:
        _write(tmp_path, run, 88.0 if _lr(run) == 2e-3 else 84.0)  # the mean now favours 2e-3
    t = resolve(fam, tmp_path)
    assert t.rates["ResMLP"] == 2e-3 and t.confirmed["ResMLP"] == {2e-3: 86.5, 6e-3: 85.0}
    from mlpvision.lab import write_report

    page = write_report(tmp_path, tmp_path / "docs").read_text()  # the second seed's runs on the tuning table
    assert "| ResMLP | 0.002 | **85.00 / 88.00** | 86.00 / 84.00 | 80.00 |" in page


def test_tuning_counts_a_diverged_run_at_chance_and_breaks_ties_towards_the_lower_rate(tmp_path):
    fam = _family("ResMLP")
    for run in resolve(fam, tmp_path).pending:
        _write(tmp_path, run, 90.0 if _lr(run) == 2e-2 else 85.0, diverged=_lr(run) == 2e-2)
    t = resolve(fam, tmp_path)
    assert t.scores["ResMLP"][2e-2] == 10.0  # diverged: chance, whatever its last validation said
    # 2e-3 and 6e-3 tie: the lower one wins, and as it is the lowest tried, the rung below is tried next
    new = [r for r in t.pending if _lr(r) == 6e-4]
    assert "ResMLP" not in t.rates and len(new) == 1
    _write(tmp_path, new[0], 70.0)
    t = resolve(fam, tmp_path)
    for run in t.pending:  # the tie is within CONFIRM: both on the second seed, tied again -> the lower rate
        _write(tmp_path, run, 85.0)
    assert resolve(fam, tmp_path).rates["ResMLP"] == 2e-3


def test_fine_tuning_families_wait_for_their_base_and_try_fractions_of_its_rate(tmp_path):
    p = PlanContext(Settings(), 28)
    t = resolve(p.families(), tmp_path)
    assert "ResMLP, fine-tuned on new classes" not in t.runs  # ResMLP is not decided yet
    for run in resolve(_family("ResMLP"), tmp_path).pending:
        _write(tmp_path, run, {2e-3: 80.0, 6e-3: 86.0, 2e-2: 82.0}[_lr(run)])
    t = resolve(p.families(), tmp_path)
    runs = t.runs["ResMLP, fine-tuned on new classes"]
    assert sorted(r.train["lr"] for r in runs) == pytest.approx(sorted([6e-3, 2e-3, 6e-4]))
    assert all(r.init is not None and r.init.train["lr"] == 6e-3 for r in runs)  # from a model at ResMLP's rate
    fine = "ResMLP, fine-tuned on new classes"
    for run in runs:  # two close rates: both again from the confirming seed's pre-trained model
        _write(tmp_path, run, {6e-3: 90.0, 2e-3: 89.9}.get(_lr(run), 80.0))
    second = [r for r in resolve(p.families(), tmp_path).runs[fine] if r.seed == CONFIRM_SEED]
    assert sorted(_lr(r) for r in second) == pytest.approx([2e-3, 6e-3])
    for run in second:
        _write(tmp_path, run, 92.0 if _lr(run) == 2e-3 else 91.0)
    assert resolve(p.families(), tmp_path).rates[fine] == pytest.approx(2e-3)
    from mlpvision.lab import write_report

    page = write_report(tmp_path, tmp_path / "docs").read_text()  # a fine-tuning's confirming runs share its rows
    assert f"| {fine} | 0.002 | 80.00 | **89.90 / 92.00** | 90.00 / 91.00 |  |" in page


@pytest.mark.parametrize("settings", [Settings(), Settings.tiny()], ids=["full", "quick"])
def test_every_comparison_names_rows_of_its_experiment_and_every_margin_has_a_reason(settings):
    for exp in plan(settings):
        labels = {r.label for r in exp.runs}
        for c in exp.comparisons:
            assert {c.a, c.b, *(c.minus or ())} <= labels, (exp.key, c.name)
            assert c.margin == 0 or c.reason, c.name
        for full, short in exp.budget_pairs.items():
            assert short == half(full) and {full, short} <= labels
        for r in exp.runs:  # every run trains a lab model at its family's rate (or the sweep's explicit one)
            models = {m.removesuffix("_28") for m, _ in (*LAB_MODELS.values(), *SEG_MODELS.values())}
            assert r.model.removesuffix("_28") in models


def test_runs_that_add_regularisers_keep_the_lab_recipes_crop_and_flip():
    """Except the over-fitting section as first registered, whose fault its correction mends (kept as registered)."""
    added = ("mixup", "cutmix", "random_erasing")
    exps = [e for e in plan(Settings()) if e.key != "resmlp_overfit"]
    runs = [r for e in exps for r in e.runs if any((r.train.get("aug") or {}).get(k) for k in added)]
    assert runs  # the corrected over-fitting section's regularised rows
    for r in runs:
        assert {k: r.train["aug"].get(k) for k in AUG} == AUG, (r.label, r.train["aug"])


@pytest.mark.parametrize("settings", [Settings(), Settings.tiny()], ids=["full", "quick"])
def test_every_claim_of_the_mission_names_comparisons_of_its_plan(settings):
    exps = {e.key: {c.name: c for c in e.comparisons} for e in plan(settings)}
    claims = seed_claims(settings)
    assert len(claims) == len(SEED_CLAIMS)
    for claim in claims:
        assert claim.untestable or claim.decided_by or claim.checks
        for key, name in claim.decided_by:
            assert name in exps[key], (key, name)
            assert exps[key][name].counted, name  # a claim is decided by counted comparisons only
        assert set(claim.checks) <= set(CHECKS)


def test_the_registered_plan_has_a_stable_hash_and_documents_every_experiment():
    s = Settings()
    assert plan_hash(s) == plan_hash(s) and plan_hash(s) != plan_hash(Settings(epochs=20))
    text = plan_markdown(s)
    assert plan_hash(s) in text
    for exp in plan(s):
        if exp.kind == "claim":
            assert f"## {exp.title}" in text


def test_the_plan_doc_committed_is_the_one_the_code_builds():
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "docs" / "lab_plan.md"
    assert committed.read_text() == plan_markdown(Settings()), "regenerate with `mlpvision lab --write-plan`"


@pytest.mark.parametrize("name", [n for n in CHECKS if n not in ("teacher_gap", "mixer_faster_than_vit")])
def test_every_deterministic_check_passes(name):
    ok, detail = CHECKS[name].fn()
    assert ok, detail


def test_the_identity_checks_fail_when_the_identity_is_broken(monkeypatch):
    import mlpvision.lab.checks as checks

    monkeypatch.setattr(checks, "pixel_permutation", lambda n: torch.roll(torch.arange(n), 1))  # another permutation
    monkeypatch.setattr(checks, "permute_pixels", lambda x, perm: x.flip(-1))  # not what the weights undo
    assert mlp_permutation()[0] is False
    assert mixer_patch_shuffle()[0] is False


def test_results_based_checks_are_pending_without_results():
    assert CHECKS["teacher_gap"].fn(rows={})[0] is None


def test_the_teacher_gap_pairs_each_seeds_teacher_with_its_own_student():
    def runs(*scores):
        return [{"seed": s, "summary": {"test_top1_final": v}} for s, v in enumerate(scores)]

    check = CHECKS["teacher_gap"].fn
    ok, text = check(rows={"teacher": runs(90.0, 86.0, 88.0), "ResMLP": runs(87.0, 84.0, 85.0)})
    assert ok and "+2.67 points" in text and "smallest seed +2.00" in text
    ok, text = check(rows={"teacher": runs(90.0, 85.0), "ResMLP": runs(89.0, 84.0, 70.0)})  # seed 2: no teacher yet
    assert ok is False and "over 2 seeds" in text and "+1.00 points" in text
    assert CHECKS["mixer_faster_than_vit"].fn(latency={})[0] is None
    times = {28: (1.0, 1.2), 112: (2.0, 5.0)}  # px -> (Mixer, ViT) median ms
    rows = {
        f"{m} at {n} px": {"median_ms": t, "p25_ms": t * 0.95, "p75_ms": t * 1.05}
        for n, (a, b) in times.items()
        for m, t in (("MLP-Mixer", a), ("ViT", b))
    }
    check = CHECKS["mixer_faster_than_vit"].fn
    assert check(latency={"rows": rows}, planned=rows)[0] is True
    planned = {**rows, "MLP-Mixer at 56 px": None, "ViT at 56 px": None}  # a size not timed yet: no verdict
    assert check(latency={"rows": rows}, planned=planned)[0] is None
    slow = {**rows, "ViT at 112 px": {"median_ms": 3.0, "p25_ms": 2.9, "p75_ms": 3.1}}  # 1.5x at 784 patches
    assert check(latency={"rows": slow}, planned=rows)[0] is False


def test_the_cli_writes_the_registered_plan(tmp_path):
    from mlpvision.cli import main

    assert main(["lab", "--write-plan", "--docs", str(tmp_path)]) == 0
    assert (tmp_path / "lab_plan.md").read_text() == plan_markdown(Settings())


def test_the_segmentation_amendment_leaves_the_first_registration_hash_alone():
    """The amendment is hashed apart: the hash the first plan's runs started under does not move with it."""
    from mlpvision.lab.registration import AMENDMENTS, amendment_hash, plan_record

    s = Settings()
    keys = {e["key"] for e in plan_record(s)["experiments"]}
    assert not keys & set(AMENDMENTS) and set(AMENDMENTS) <= {e.key for e in plan(s)}
    assert plan_hash(s) == "53b8c0b5abf92789"  # the plan registered before the first runs
    assert amendment_hash(s) in plan_markdown(s) and amendment_hash(s) != amendment_hash(Settings(seeds=(0, 1, 2, 3)))


def test_each_correction_is_hashed_apart_and_one_made_before_its_runs_replaces_the_registered_design():
    from mlpvision.lab.plan import CORRECTIONS
    from mlpvision.lab.registration import correction_hashes

    s = Settings()
    hashes = correction_hashes(s)
    assert plan_hash(s) == "53b8c0b5abf92789" and hashes["resmlp_overfit_corrected"] == "1f92367c929dd1d4"
    keys, registered = {e.key for e in plan(s)}, {e.key for e in plan(s, registered=True)}
    for key, c in CORRECTIONS.items():
        assert key in keys and hashes[key] in plan_markdown(s)
        assert (c.replaces in keys) == c.ran and c.replaces in registered  # never trained when replaced before runs


def test_the_resolution_sections_scratch_rows_are_the_expanded_models():
    from mlpvision.train.finetune import expand_token_mixing

    exp = next(e for e in plan(Settings()) if e.key == "resolution_corrected")
    for c in exp.comparisons:
        tuned = next(r for r in exp.runs if r.label == c.a)
        scratch = next(r for r in exp.runs if r.label == c.b and r.seed == tuned.seed)
        assert (
            tuned.train["aug"] == scratch.train["aug"] and tuned.train["aug"]["crop_padding"] == 2 * AUG["crop_padding"]
        )
        small = create_model(tuned.init.model, **tuned.init.model_args)
        expanded = expand_token_mixing(small, tuned.train["img_size"])
        big = create_model(scratch.model, img_size=scratch.train["img_size"], **scratch.model_args)
        shapes = {k: v.shape for k, v in expanded.state_dict().items()}
        assert shapes == {k: v.shape for k, v in big.state_dict().items()}, c.name


def test_the_tuning_experiment_holds_only_the_families_some_experiment_trains():
    s = Settings()
    tuning = plan(s)[0]
    tuned = {run.label.split(" | lr ")[0] for run in tuning.runs}
    needed = needed_families(s)
    # every family an experiment trains is tuned (a fine-tuning once its base is: nothing is here), and no other
    assert tuned <= needed and needed - tuned == {k for k in FINE_TUNING if k in needed}
    assert "local CNN (5x5 field)" not in tuned  # a lab model only the synthetic probes train, with their own rates
    assert needed_families(s, ["segmentation"]) < needed


def _params(model: str, args: dict, **change) -> int:
    if "backbone_args" in args:
        args = {**args, "backbone_args": {**args["backbone_args"], **change}}
    else:
        args = {**args, **change}
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(model, **args).parameters())


def _nearest(model: str, args: dict, target: int) -> bool:
    """Whether ``args``'s width gives the parameter count nearest ``target`` (against one narrower and one wider),
    within 5% of it."""
    width = (args.get("backbone_args") or args)["width"]
    gaps = {w: abs(_params(model, args, width=w) - target) for w in (width - 1, width, width + 1)}
    return min(gaps, key=gaps.get) == width and gaps[width] < 0.05 * target


@pytest.mark.parametrize("data", ["fashion-mnist", "cifar10"])
def test_the_widened_resnet_has_the_width_nearest_the_repmlp_resnets_parameters(data):
    p = PlanContext(Settings(data=data), 28 if data == "fashion-mnist" else 32)
    assert _nearest(*p.model("ResNet-18/4, widened"), _params(*p.model("RepMLP-ResNet-18/4")))
    if data == "fashion-mnist":  # the registered plan's literal width is the one the rule gives
        assert p.model("ResNet-18/4, widened")[1] == LAB_MODELS["ResNet-18/4, widened"][1]
        assert _nearest(*SEG_MODELS["seg: ResNet-18/2, widened"], _params(*SEG_MODELS["seg: RepMLP-ResNet-18/2"]))


def test_every_metric_a_section_shows_is_known_and_its_figure_shows_only_table_columns():
    """A typo in a section's metric, columns or figure_columns would surface as a KeyError while the page is
    drawn, after the runs; here it fails at once."""
    from mlpvision.lab.measures import METRICS

    for settings in (Settings(), Settings.tiny()):
        for exp in plan(settings):
            assert exp.metric in METRICS and set(exp.columns) <= set(METRICS), exp.key
            assert set(exp.figure_columns) <= set(exp.columns), exp.key


def test_the_speed_check_fails_only_when_mixer_is_shown_slower_and_says_what_its_first_code_said():
    """The registered refutation asks that Mixer be shown slower at a size (or short of 2x at 784 patches): timings
    whose spreads overlap leave the check inconclusive, which the first code counted as failed. The claims table
    shows the corrected verdict, with the first one beside it."""
    from mlpvision.lab.checks import INCONCLUSIVE, run_first_coded
    from mlpvision.lab.report import _claims_table
    from mlpvision.lab.seed_claims import SeedClaim

    def timed(times):  # px -> (Mixer, ViT) median ms, quartiles at 0.8x and 1.2x
        return {
            f"{m} at {n} px": {"median_ms": t, "p25_ms": t * 0.8, "p75_ms": t * 1.2}
            for n, (a, b) in times.items()
            for m, t in (("MLP-Mixer", a), ("ViT", b))
        }

    check = CHECKS["mixer_faster_than_vit"].fn
    close = timed({28: (3.2, 3.4), 112: (20.0, 60.0)})  # equal within the spread at 28 px, 3x at 784 patches
    slower = timed({28: (3.2, 1.6), 112: (20.0, 60.0)})  # ViT's slowest quarter beats Mixer's fastest at 28 px
    short = timed({28: (1.0, 3.0), 112: (20.0, 25.0)})  # at most 1.9x at 784 patches, counting the spread
    assert check(latency={"rows": close}, planned=close)[0] == INCONCLUSIVE
    assert check(latency={"rows": slower}, planned=slower)[0] is False
    assert check(latency={"rows": short}, planned=short)[0] is False
    assert run_first_coded("mixer_faster_than_vit", latency={"rows": close}, planned=close)[0] is False
    assert run_first_coded("teacher_gap", rows={}) is None  # only a corrected check has a first code

    claim = SeedClaim("Mixer is much faster", "MLP-Mixer", (), ("mixer_faster_than_vit",))
    result = check(latency={"rows": close}, planned=close)
    first = run_first_coded("mixer_faster_than_vit", latency={"rows": close}, planned=close)
    row = _claims_table([], {"mixer_faster_than_vit": result}, (claim,), {"mixer_faster_than_vit": first})[2]
    assert "**undecided (a check is inconclusive), by a check corrected after its result; as first coded: " in row
    assert "refuted (a check failed)**" in row and "inconclusive" in row
    agreeing = _claims_table([], {"mixer_faster_than_vit": (True, "")}, (claim,), {"mixer_faster_than_vit": (True, "")})
    assert "**checked**" in agreeing[2] and "first coded" not in agreeing[2]  # the same result: nothing to add
