"""The human model card (MODEL_CARD.md), written from the card data so its figures never drift.

The export writes it beside every model; ``facecast-train single-pass`` rewrites it with the variant's
figures; ``python -m training.card models/facecast_int8.json`` rewrites it after an edit of this
template. How a model was chosen and what else was tried live in docs/, not here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.errors import ModelError
from agent.model_contract import ModelCard, read_card

log = logging.getLogger(__name__)

CARD_FILE = "MODEL_CARD.md"
# Test sets as the card names them, in the order it lists them.
TEST_SETS = {
    "fer2013_test": "FER2013 test",
    "fer2013_test_ferplus": "FER2013 test, FER+ crowd label",
    "utkface_test": "UTKFace test",
    "aaf_test": "All-Age-Faces test",
    "lfw_test": "LFW test",
}
# Training sources as the summary names them (``<source>_train``), and their licences.
SOURCES = {
    "fer2013": "FER2013",
    "utkface": "UTKFace",
    "aaf": "All-Age-Faces",
    "lfw": "LFW",
}
LICENCES = {
    "fer2013": '**FER2013** (Goodfellow et al. 2013; Kaggle "Challenges in Representation Learning"): research /\n'
    "  non-commercial use; web-scraped images, copyright with their owners. Labels are noisy (human accuracy\n"
    "  about 65%).",
    "ferplus": "**FER+** (Barsoum et al. 2016, Microsoft): the vote file is MIT-licensed.",
    "utkface": "**UTKFace** (Zhang, Song, Qi 2017): non-commercial research only.",
    "aaf": "**All-Age-Faces** (Cheng et al. 2019): no licence stated, citation asked; treated as\n"
    "  non-commercial research only.",
    "lfw": "**LFW** (Huang et al. 2007) with its gender lists: a research benchmark of news photos,\n"
    "  copyright with their owners; treated as non-commercial research only.",
}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _head(metrics: dict[str, Any], test_set: str, head: str) -> dict[str, Any]:
    return dict((metrics.get(test_set) or {}).get(head) or {})


def _inside_graph(card: ModelCard) -> str:
    """What the graph does around the network, so a reader knows the file takes the whole face crop
    even where the network sees less of it."""
    steps = []
    if card.zoom != 1.0:
        steps.append(f"the network reads the central {card.zoom:g} of each side of the input, enlarged back")
    if card.flip_tta:
        steps.append("each face is averaged with its mirror image")
    gb = card.training.get("gender_balance") or {}
    if gb.get("offset_log_odds"):
        after = gb["validation_recall_after"]
        steps.append(
            f"the gender decision is shifted by {gb['offset_log_odds']:+.2f} log-odds toward female, chosen on"
            f" validation to equalise male and female recall there ({_pct(after['male'])} /"
            f" {_pct(after['female'])})"
        )
    if not steps:
        return ""
    return (
        "\n- Inside the graph (chosen on validation data, so every user of the file gets it): "
        + "; ".join(steps)
        + "."
    )


def _figures(card: ModelCard) -> str:
    i8, fl = card.metrics.get("int8", {}), card.metrics.get("float", {})
    rows = []
    for key, title in TEST_SETS.items():
        for head in ("emotion", "gender"):
            r8, rf = _head(i8, key, head), _head(fl, key, head)
            if not r8:
                continue
            rows.append(
                (
                    f"{title} (n={r8['n']:,})",
                    f"{head} accuracy",
                    f"**{_pct(r8['accuracy'])}**",
                    _pct(rf.get("accuracy")),
                )
            )
            rows.append(("", f"{head} macro-F1", _pct(r8["macro_f1"]), _pct(rf.get("macro_f1"))))
            if "public_test" in r8 and key == "fer2013_test":
                rows.append(
                    (
                        "",
                        "PublicTest / PrivateTest",
                        f"{_pct(r8['public_test'])} / {_pct(r8['private_test'])}",
                        f"{_pct(rf.get('public_test'))} / {_pct(rf.get('private_test'))}",
                    )
                )
            if "per_sex" in r8:
                sex = r8["per_sex"]
                rows.append(
                    (
                        "",
                        "male / female",
                        f"{_pct(sex.get('male'))} / {_pct(sex.get('female'))}",
                        " / ".join(_pct(rf.get("per_sex", {}).get(s)) for s in ("male", "female")),
                    )
                )
    text = _table(rows, ("test set", "figure", "int8", "float"))
    crowd = _head(i8, "fer2013_test_ferplus", "emotion")
    if crowd:
        text += (
            "\n\nThe FER+ crowd label is the unique top vote of ten FER+ annotators, where it is one of the seven"
            " classes. FER2013's own test labels agree with it on"
            f" {_pct(crowd.get('fer2013_label_agreement'))} of those images, so much of a model's distance from"
            " 100% on FER2013's labels is their noise."
        )
    parity, lat = card.metrics.get("parity") or {}, card.metrics.get("latency_ms") or {}
    if parity:
        drop = parity["drop_points"]
        text += (
            f"\n\nint8 against float: {-drop['emotion_accuracy']:+.2f} points of emotion accuracy,"
            f" {-drop['gender_accuracy']:+.2f} of gender"
        )
        mae = parity.get("probability_mae")
        text += f" (mean probability difference {mae['emotion']} / {mae['gender']})." if mae else "."
    if lat:
        text += (
            f" Latency on the training machine (LiteRT, 1 thread, batch 1, median of {lat['runs']} runs):"
            f" **{lat['median']} ms** (p95 {lat['p95']} ms). A CPU without AVX-512, or a Pi, takes several"
            " times longer: `docs/model-history.md` has figures."
        )
    return text


def _recall(card: ModelCard) -> str:
    r8 = _head(card.metrics.get("int8", {}), "fer2013_test", "emotion")
    rf = _head(card.metrics.get("float", {}), "fer2013_test", "emotion")
    rows = [
        (label, _pct(r8["per_class_recall"][label]), _pct(rf.get("per_class_recall", {}).get(label)))
        for label in card.labels.emotion
    ]
    return _table(rows, ("class", "int8", "float"))


def _groups(card: ModelCard) -> str:
    """Gender accuracy by each test set's groups (UTKFace: race and age; others: age where labelled)."""
    parts = []
    for key, title in TEST_SETS.items():
        r8 = _head(card.metrics.get("int8", {}), key, "gender")
        for field, what in (("per_race", "race"), ("per_age_group", "age")):
            groups = r8.get(field)
            if not groups:
                continue
            # Each sex's column wherever the evaluator gave the groups one (it does by age).
            sexes = card.labels.gender if any("per_sex" in v for v in groups.values()) else ()
            rows = [
                (g, _pct(v["accuracy"]), *(_pct(v.get("per_sex", {}).get(s)) for s in sexes), f"{v['n']:,}")
                for g, v in groups.items()
            ]
            header = (what, "accuracy", *sexes, "n")
            parts.append(f"{title}, by {what}:\n\n" + _table(rows, header))
    return "\n\n".join(parts)


def _variant(variant: ModelCard | None) -> str:
    if variant is None or variant.file is None:
        return ""
    i8 = variant.metrics.get("int8", {})
    rows = [
        (title, head, _pct(_head(i8, key, head).get("accuracy")))
        for key, title in TEST_SETS.items()
        for head in ("emotion", "gender")
        if _head(i8, key, head)
    ]
    return (
        f"\n\n### Single-pass variant: `{variant.file.name}`\n"
        "The same int8 graph without the mirror batch and the averages (`facecast-train single-pass`; same"
        " weights, never requantized): half the time per face. The agent uses it with `model.single_pass: true`."
        " int8 figures on the same test sets:\n\n" + _table(rows, ("test set", "head", "int8"))
    )


def _data(card: ModelCard) -> str:
    summary: dict[str, Any] = card.training.get("data") or {}
    parts = []
    for key, name in SOURCES.items():
        if f"{key}_train" in summary:
            parts.append(
                f"{name} {summary[f'{key}_train']:,} training / {summary.get(f'{key}_val', 0):,} validation"
            )
    parts += [f"{k.replace('_', ' ')} {v:,}" for k, v in summary.items() if ":" in k]
    notes = []
    if summary.get("ferplus_matched"):
        notes.append(f"FER+ votes for {summary['ferplus_matched']:,} FER2013 images")
    if summary.get("fer2013_excluded_blank_or_test_duplicate"):
        notes.append(
            f"{summary['fer2013_excluded_blank_or_test_duplicate']:,} FER2013 training images left out"
            " (blank, or pixel duplicates of test images)"
        )
    if summary.get("utkface_excluded_conflicting_gender"):
        notes.append(
            f"{summary['utkface_excluded_conflicting_gender']:,} UTKFace training faces left out (byte-identical"
            " copies carry the other gender)"
        )
    return "; ".join(parts) + (". " + "; ".join(notes) + "." if notes else ".")


def _licences(card: ModelCard) -> str:
    summary: dict[str, Any] = card.training.get("data") or {}
    used = [k for k in SOURCES if f"{k}_train" in summary]
    if summary.get("ferplus_matched"):
        used.insert(used.index("fer2013") + 1 if "fer2013" in used else 0, "ferplus")
    lines = [f"- {LICENCES[k]}" for k in used]
    if any(":" in k for k in summary):
        lines.append("- Your own data (manifests, folders), under whatever terms you hold it.")
    return "\n".join(lines)


def render(card: ModelCard, variant: ModelCard | None = None) -> str:
    """The card's Markdown text; ``variant`` is the single-pass variant's card, where there is one."""
    tr, inp = card.training, card.input
    name = card.file.name if card.file else "model"
    size_kib = f", {card.file.bytes / 1024:.0f} KiB" if card.file else ""
    quant = inp.quantization
    quant_text = f" (scale {quant.scale:.6g}, zero point {quant.zero_point})" if quant else ""
    framing = tr.get("framing") or {}
    aug = tr.get("augmentation") or {}
    chosen = (tr.get("inference_choice") or {}).get("chosen", "n/a")
    summary: dict[str, Any] = tr.get("data") or {}
    tight = ", ".join(SOURCES[k] for k in ("fer2013", "lfw") if f"{k}_train" in summary) or "FER2013"
    loose = ", ".join(
        ["UTKFace"] * ("utkface_train" in summary) + ["your own data"] * any(":" in k for k in summary)
    )
    wide = f", {framing['wide_scale']} for wide ones (All-Age-Faces)" if "aaf_train" in summary else ""
    seconds = float(tr.get("seconds") or 0)
    init = tr.get("init_from") or {}
    start = (
        f"starting from the weights of `{init.get('file')}` version {init.get('version')} (sha256"
        f" {str(init.get('sha256'))[:12]}…; its training: docs/model-history.md), then"
        if init
        else "from random weights,"
    )
    return f"""# facecast model card: `{name}`

One small convolutional network ({card.parameters or 0:,} parameters, `{card.architecture.get("architecture")}`)
with a shared backbone and two heads: **emotion**, the 7 FER2013 classes, and perceived **gender**, 2
classes. Full-integer int8 TFLite{size_kib}, version {card.version}. The machine-readable card is
`{Path(name).with_suffix(".json").name}` beside it. How this model was chosen: `docs/model-history.md`;
what was tried and not shipped: `docs/experiments.md`.

## How to feed it
- One signature; one int8 input `[1, {inp.height}, {inp.width}, 1]` representing the float range
  `{list(inp.range)}`{quant_text}.
- Outputs read by name, probabilities after dequantization: `emotion` = {", ".join(card.labels.emotion)};
  `gender` = {", ".join(card.labels.gender)}.
- The face: a square around the detector box grown by **{card.crop.margin}** of the box side on each
  side, grayscale (ITU-R 601 luma), resized to {inp.height}x{inp.width} (area filter when shrinking), scaled
  to [0, 1]. One implementation, `agent/preprocess.py`, serves training, evaluation and the agent.{_inside_graph(card)}

## Figures
Every figure is on test data the model never saw in training or selection, fed as the agent feeds it
(the whole test image as the dataset gives it, grayscale, resized).

{_figures(card)}

### Emotion recall per class (FER2013 test)
{_recall(card)}

### Gender accuracy per group
{_groups(card)}

Confusion matrices: `figures/confusion_*.png` beside this card; training curves:
`figures/training_curves.png`.{_variant(variant)}

## Training
- Data: {_data(card)}
- Trained {start} {tr.get("epochs_run")} epochs in {seconds:,.0f} s ({seconds / 60:.0f} min) on 2 CPU cores, seed {tr.get("seed")}; the best checkpoint by the
  mean validation accuracy of both heads. Validation: a 10% slice of FER2013 train (pixel duplicates kept on
  one side) and each gender set's fixed validation split. Every choice (checkpoint, {chosen}, the gender
  offset) was made on validation data, never on test.
- Random crops of {framing.get("tight_scale")} of the image side for tight datasets ({tight}),
  {framing.get("loose_scale")} for loose ones ({loose or "UTKFace"}){wide}, shifted up to ±{framing.get("shift")}; mirror,
  rotation ±{aug.get("rotation_deg")}°, brightness ±{aug.get("brightness")}, contrast ±{aug.get("contrast")}.
- Emotion target: {1 - tr.get("ferplus_blend", 0):.1f} × the FER2013 label + {tr.get("ferplus_blend", 0):.1f} × the FER+ vote
  distribution; {tr.get("class_imbalance")} against class imbalance (disgust is 1.5% of FER2013).

## Data and licences
{_licences(card)}
- Because of these licences **the model weights are for non-commercial research use** in practice; the
  facecast code is MIT-licensed. None of the images are in this repository.

## Intended use
Live, on-device, aggregate affect signals: how many visitors smile at a kiosk, a robot that reacts to
expressions, lab studies with consent. Images never leave the device.

## Out of scope
- Decisions about individuals: hiring, policing, credit, insurance, grading, health.
- Inferring anyone's gender identity: the gender head reproduces **binary, perceived** labels that
  dataset annotators assigned; it is wrong for many people and says nothing about identity.
- Lie detection, "true feelings", mental-health assessment: a facial expression is not an emotion.
- Surveillance of people who have not been told that a camera reads their faces.

## Limitations and biases
- FER2013's labels are noisy and its faces are mostly posed-looking web images of adults; accuracy drops
  on real camera frames, in poor light, on profiles, on occluded faces (masks, glasses) and on children.
- Disgust and fear are rare and often confused with angry and sad (see the recall table).
- UTKFace skews towards white adults, and gender accuracy is lower for children and some groups (tables
  above). A baby's sex is not visually reliable at all. Which sex is read better changes with age (the
  by-age tables give each), so the gap between the sexes differs from one set to another, even in sign.
- The gender labels are noisy too: UTKFace's test split holds 5 pairs of one face labelled both ways, and a
  reviewer read 18 of the 28 confident test errors of the model shipped on 2026-11-29 as the other sex
  (`docs/experiments.md`, "The gender-label audit"). The test figures count such faces as errors.
- 48x48 grayscale input discards colour and fine detail by design, for speed on a Pi.
"""


def write_card_markdown(card: ModelCard, path: Path, variant: ModelCard | None = None) -> None:
    path.write_text(render(card, variant))


def main(argv: list[str] | None = None) -> int:
    """``python -m training.card CARD.json``: rewrite MODEL_CARD.md beside the card, with the
    single-pass variant's figures where its card (``<stem>_single.json``) sits beside it too."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.card CARD.json", file=sys.stderr)
        return 2
    card_json = Path(args[0])
    single = card_json.with_name(f"{card_json.stem}_single.json")
    try:
        card = read_card(card_json)
        variant = read_card(single) if single.is_file() else None
    except ModelError as exc:
        print(f"training.card: error: {exc}", file=sys.stderr)
        return 2
    out = card_json.with_name(CARD_FILE)
    write_card_markdown(card, out, variant)
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
