"""The human model card (MODEL_CARD.md), written from the card data so figures never drift."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.model_contract import ModelCard

NOTES = Path(__file__).with_name("card_notes.md")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _prob_mae(parity: dict[str, Any]) -> str:
    """Cards written before the probability comparison existed lack it; they render without it."""
    mae = parity.get("probability_mae")
    if not mae:
        return ""
    return f" Mean absolute probability difference: emotion {mae['emotion']}, gender {mae['gender']}."


def _inside_graph(card: dict[str, Any]) -> str:
    """What the graph does to its input before and after the network, so a reader of the card knows
    the file takes the whole face crop even where the network sees less of it. Older cards have no
    zoom."""
    zoom, flip = card.get("zoom", 1.0), card.get("flip_tta", False)
    steps = []
    if zoom != 1.0:
        steps.append(f"the network reads the central {zoom:g} of each side of the input, enlarged back to full size")
    if flip:
        steps.append("it averages each face with its mirror image")
    if not steps:
        return ""
    return (
        "\n- **Inside the graph** (chosen on validation data, applied by every consumer of the file): "
        + "; ".join(steps)
        + "."
    )


def write_card_markdown(model_card: ModelCard, path: Path) -> None:
    card = json.loads(model_card.to_json())
    m = card["metrics"]
    i8, fl = m["int8"], m["float"]
    fer, utk = i8["fer2013_test"]["emotion"], i8["utkface_test"]["gender"]
    fer_f, utk_f = fl["fer2013_test"]["emotion"], fl["utkface_test"]["gender"]
    inp = card["input"]
    tr = card["training"]
    recall_rows = [
        (lab, _pct(fer["per_class_recall"][lab]), _pct(fer_f["per_class_recall"][lab]))
        for lab in card["labels"]["emotion"]
    ]
    conflicts = tr["data"].get("utkface_excluded_conflicting_gender")
    utk_conflicts = (
        f" So were the {conflicts} UTKFace training faces whose byte-identical copies carry the other gender."
        if conflicts
        else ""
    )
    race_rows = [(r, _pct(v["accuracy"]), str(v["n"])) for r, v in utk.get("per_race", {}).items()]
    age_rows = [(a, _pct(v["accuracy"]), str(v["n"])) for a, v in utk.get("per_age_group", {}).items()]
    notes = NOTES.read_text().strip() if NOTES.is_file() else ""
    crowd = (i8.get("fer2013_test_ferplus") or {}).get("emotion")
    crowd_f = (fl.get("fer2013_test_ferplus") or {}).get("emotion")
    crowd_rows = ""
    if crowd:
        crowd_rows = (
            f"\n| FER2013 test, FER+ crowd label (n={crowd['n']}) | emotion accuracy |"
            f" **{_pct(crowd['accuracy'])}** | {_pct(crowd_f['accuracy'] if crowd_f else None)} |"
            f"\n| FER2013 test, FER+ crowd label | emotion macro-F1 | {_pct(crowd['macro_f1'])} |"
            f" {_pct(crowd_f['macro_f1'] if crowd_f else None)} |"
        )
        crowd_rows += (
            "\n\nFER+ crowd label: the one most-voted of the ten FER+ annotators' labels, where it is"
            " unique and one of the seven classes (FER2013 test images with contempt, unknown, not-a-face"
            f" or a tie on top are left out). FER2013's own test labels agree with it on"
            f" {_pct(crowd.get('fer2013_label_agreement'))} of these images, so much of a model's"
            " distance from 100% on FER2013's labels is their noise; the crowd label is the cleaner measure."
        )
        if not crowd_f:
            crowd_rows += " Its float figure was not measured: the row was added after the training run."
    inside = _inside_graph(card)
    gb = tr.get("gender_balance") or {}
    balance = ""
    if gb:
        before, after = gb["validation_recall_before"], gb["validation_recall_after"]
        balance = (
            f"\n- Gender balance: a log-odds offset of {gb['offset_log_odds']:+.2f} toward female is built into the"
            f" graph, chosen on validation data to equalise the sexes' recall there (male / female"
            f" {_pct(before['male'])} / {_pct(before['female'])} before, {_pct(after['male'])} /"
            f" {_pct(after['female'])} after)."
        )
    text = f"""# facecast model card — `{card['file']['name']}`

One small CNN ({card['parameters']:,} parameters, `{card['architecture']['architecture']}`) with a shared
convolutional backbone and two heads, **emotion** (7 FER2013 classes) and **gender** (2 classes),
quantized to full-integer int8 TFLite ({card['file']['bytes'] / 1024:.0f} KiB). Machine-readable data:
`{Path(card['file']['name']).with_suffix('.json').name}` (same stem). Version {card['version']}.

## Contract
- One signature; one input `[1, {inp['height']}, {inp['width']}, 1]` int8 representing the float range
  `{inp['range']}` (scale {inp['quantization']['scale']:.6g}, zero point {inp['quantization']['zero_point']}).
- Outputs read by name: `emotion` = {', '.join(card['labels']['emotion'])}; `gender` = {', '.join(card['labels']['gender'])};
  both are probabilities after dequantization.

## Preprocessing (one definition: `agent/preprocess.py`, used by training, evaluation and the agent)
- Grayscale (ITU-R 601 luma), resize to {inp['height']}x{inp['width']} (area filter when shrinking), scale to [0, 1].
- **Framing**: the agent crops a square around the detector box, grown by `crop.margin` =
  **{card['crop']['margin']}** of the box side on each side, clamped to the frame.{inside}
- Training only: random crop-scale (FER2013 crops {tr['framing']['tight_scale']}, UTKFace crops
  {tr['framing']['loose_scale']} of the image side, centre shift ±{tr['framing']['shift']}), so the model
  covers the range from a tight FER2013-style crop to UTKFace's whole aligned face; horizontal flip,
  rotation ±{tr['augmentation']['rotation_deg']}°, brightness ±{tr['augmentation']['brightness']},
  contrast ±{tr['augmentation']['contrast']}.
- Class imbalance (disgust is 1.5% of FER2013): {tr['class_imbalance']}; weights per class
  {tr['emotion_class_weight']} (order as the labels).
- FER+ votes: the emotion target is {1 - tr['ferplus_blend']:.1f} × FER2013 one-hot + {tr['ferplus_blend']:.1f} ×
  FER+ vote distribution (crowd-sourced soft label; the FER2013 label always stays the arg-max).{balance}

## Figures (int8 model, LiteRT; protocol: {m['protocol']})
| test set | head | int8 | float |
|---|---|---|---|
| FER2013 test (n={fer['n']}) | emotion accuracy | **{_pct(fer['accuracy'])}** | {_pct(fer_f['accuracy'])} |
| FER2013 test | emotion macro-F1 | {_pct(fer['macro_f1'])} | {_pct(fer_f['macro_f1'])} |
| FER2013 PublicTest / PrivateTest | emotion accuracy | {_pct(fer.get('public_test'))} / {_pct(fer.get('private_test'))} | {_pct(fer_f.get('public_test'))} / {_pct(fer_f.get('private_test'))} |
| UTKFace `splits/test.txt` (n={utk['n']}) | gender accuracy | **{_pct(utk['accuracy'])}** | {_pct(utk_f['accuracy'])} |
| UTKFace test | gender male / female | {_pct(utk['per_sex'].get('male'))} / {_pct(utk['per_sex'].get('female'))} (gap {utk['sex_gap_points']} pts) | {_pct(utk_f['per_sex'].get('male'))} / {_pct(utk_f['per_sex'].get('female'))} |{crowd_rows}

int8 vs float drop (points): emotion {m['parity']['drop_points']['emotion_accuracy']}, gender
{m['parity']['drop_points']['gender_accuracy']}.{_prob_mae(m['parity'])} Latency (LiteRT, 1 thread, batch 1, median of
{m['latency_ms']['runs']} runs on the training machine, x86_64 2 cores): **{m['latency_ms']['median']} ms**
(p95 {m['latency_ms']['p95']} ms).

### Emotion recall per class (FER2013 test)
{_table(recall_rows, ('class', 'int8', 'float'))}

### Gender accuracy per UTKFace race and age group (test split, int8)
{_table(race_rows, ('race', 'accuracy', 'n'))}

{_table(age_rows, ('age', 'accuracy', 'n'))}

Confusion matrices: `figures/confusion_*.png` beside this card (also in the training run folder); training curves:
`figures/training_curves.png`.

## Training
Data: {tr['data']}. Epochs run: {tr['epochs_run']}, {tr['seconds']} s on 2 CPU cores; seed {tr['seed']}.
Model selection used validation data only (a 10% slice of FER2013 train, grouped so pixel duplicates stay
on one side, and UTKFace `splits/val.txt`); never the test sets. Train images that are pixel duplicates of
FER2013 test images, and blank images, were removed before training.{utk_conflicts}

{notes}

## Data and licences
- **FER2013** (Goodfellow et al. 2013; Kaggle "Challenges in Representation Learning"): research /
  non-commercial use; images web-scraped, copyright with their owners. Labels are noisy (human accuracy
  about 65%).
- **FER+** (Barsoum et al. 2016, Microsoft): label file under MIT licence.
- **UTKFace** (Zhang, Song, Qi 2017): non-commercial research only.
- Because of these licences, **the model weights inherit a non-commercial research restriction** in
  practice; the facecast code is MIT-licensed. None of the images are in this repository.

## Intended use
Live, on-device, aggregate affect signals (e.g. how many visitors smile at a kiosk, a robot reacting to
expressions, lab studies with consent), with images never leaving the device.

## Out of scope
- Decisions about individuals (hiring, policing, credit, insurance, education grading, health).
- Inferring anyone's gender identity: the gender head reproduces **binary, perceived** labels assigned
  by annotators of UTKFace; it is wrong for many people and says nothing about identity.
- Lie detection, "true feelings", mental-health assessment: facial expression is not emotion.
- Surveillance of people who have not been told a camera reads their faces.

## Limitations and biases
- FER2013's labels are noisy and its faces are mostly posed-looking web images of adults; accuracy
  drops on real camera frames, poor light, profiles, occlusions (masks, glasses) and children.
- Disgust and fear are rare and often confused with angry and sad (see the recall table).
- UTKFace skews towards white adults; gender accuracy is lower for children and some groups
  (tables above). Babies' gender is not visually reliable at all.
- UTKFace's gender labels are noisy too. Its test split holds 5 pairs of byte-identical faces labelled
  both ways, so every model misses at least 5. Of the 28 test errors that the `vgg-s` model shipped on
  2026-11-29 made with at least 95% confidence on faces aged 13 or more, a reviewer read 18 faces as the
  other sex than labelled and 10 as unclear (docs/experiments.md, "The gender-label audit"). The test figures
  count such faces as errors, as any evaluation on these labels does.
- 48x48 grayscale input discards colour and fine detail by design (speed on a Pi).
"""
    path.write_text(text)
