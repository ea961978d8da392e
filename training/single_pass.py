"""Derive a single-pass variant of a mirror-averaged (``flip_tta``) int8 model, without retraining.

The shipped model runs its backbone twice per face, on the image and its mirror, and averages the
two softmax outputs (``export.with_flip_tta``). That doubles the per-face cost, which a slow device
(a Raspberry Pi, an x86 without VNNI) may not want to pay. The float weights behind a shipped model
are not always kept, and requantizing would change it anyway, so this edits the int8 graph itself:

* ``REVERSE_V2`` + ``CONCATENATION`` on the input (the mirror batch) are dropped: the first
  convolution reads the input directly (or, in a zoomed model, the zoomed input);
* each ``SPLIT -> ADD -> MUL(0.5)`` after a softmax (the average) is dropped: its consumers, or the
  signature output, read the softmax directly.

Every other operator, weight and quantization parameter is kept byte for byte. TFLite kernels take
their rescaling factors from the tensors they are wired to, so the rewired int8 graph computes
exactly the single-pass network. Uses the flatbuffer schema that ships with LiteRT (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from agent.model_contract import CardFile, ModelCard, card_path_for, read_card
from training.card import CARD_FILE, write_card_markdown
from training.errors import ExportError

log = logging.getLogger(__name__)


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _opnames(model: Any) -> list[str]:
    s = _schema()
    by_code = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    return [by_code[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]


def strip_flip_tta(model_bytes: bytes) -> bytes:
    """The single-pass graph of a mirror-averaged model; raises ``ExportError`` if it is not one."""
    import flatbuffers

    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(model_bytes, 0))
    if len(model.subgraphs) != 1:
        raise ExportError(f"expected one subgraph, found {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    names = _opnames(model)
    ops = list(graph.operators)
    kind = [names[op.opcodeIndex] for op in ops]

    def consumers(tensor: int) -> list[Any]:
        return [op for op in ops if tensor in [int(t) for t in op.inputs]]

    drop: set[int] = set()
    # 1. The mirror batch: REVERSE_V2(x) and CONCATENATION(x, reversed), where x is the input or,
    # in a zoomed model, the zoomed input.
    rev = [i for i, op in enumerate(ops) if kind[i] == "REVERSE_V2"]
    if len(rev) != 1:
        raise ExportError("not a mirror-averaged model: no single REVERSE_V2 (the mirror image)")
    source, mirrored = int(ops[rev[0]].inputs[0]), int(ops[rev[0]].outputs[0])
    cat = [
        i
        for i, op in enumerate(ops)
        if kind[i] == "CONCATENATION" and [int(t) for t in op.inputs] == [source, mirrored]
    ]
    if len(cat) != 1:
        raise ExportError("not a mirror-averaged model: no CONCATENATION of a face and its mirror")
    batch = int(ops[cat[0]].outputs[0])
    for op in consumers(batch):
        op.inputs = [source if int(t) == batch else int(t) for t in op.inputs]
    drop |= {rev[0], cat[0]}

    # 2. Each average: SPLIT(softmax) -> ADD(a, b) -> MUL(sum, 0.5).
    redirect: dict[int, int] = {}
    for i, op in enumerate(ops):
        if kind[i] != "SPLIT" or len(op.outputs) != 2:
            continue
        probs = int(op.inputs[1])
        halves = {int(t) for t in op.outputs}
        adds = [j for j, o in enumerate(ops) if kind[j] == "ADD" and {int(t) for t in o.inputs} == halves]
        if len(adds) != 1:
            continue
        total = int(ops[adds[0]].outputs[0])
        muls = [j for j, o in enumerate(ops) if kind[j] == "MUL" and total in [int(t) for t in o.inputs]]
        if len(muls) != 1:
            continue
        averaged = int(ops[muls[0]].outputs[0])
        redirect[averaged] = probs
        drop |= {i, adds[0], muls[0]}
    if len(redirect) != 2:
        raise ExportError(f"expected 2 averaged heads, found {len(redirect)}")
    for averaged, probs in redirect.items():
        for op in consumers(averaged):
            op.inputs = [probs if int(t) == averaged else int(t) for t in op.inputs]
    graph.outputs = [redirect.get(int(t), int(t)) for t in graph.outputs]
    for signature in model.signatureDefs or []:
        for out in signature.outputs:
            out.tensorIndex = redirect.get(int(out.tensorIndex), int(out.tensorIndex))

    graph.operators = [op for i, op in enumerate(ops) if i not in drop]
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    log.info("dropped %d operators (mirror batch and averages)", len(drop))
    return bytes(builder.Output())


def write_single_pass(src: Path, dst: Path) -> Path:
    """Write the single-pass variant of ``src`` to ``dst``."""
    try:
        data = Path(src).read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {src}: {exc.strerror}") from None
    dst.write_bytes(strip_flip_tta(data))
    return dst


def single_pass_card(card: ModelCard, metrics: dict[str, Any], model: Path) -> ModelCard:
    """The source card with this file, its own measured int8 figures, and where it came from.

    The float figures are left out: no float model computes exactly this graph's inputs to the
    quantized layers any more than the source's did, and the source card keeps them.
    """
    old8 = card.metrics.get("int8", {})

    def headline(test_set: str, head: str) -> Any:
        return old8.get(test_set, {}).get(head, {}).get("accuracy")

    assert card.file is not None  # make_variant checked it
    return dataclasses.replace(
        card,
        file=CardFile(name=model.name, bytes=model.stat().st_size),
        flip_tta=False,
        metrics={
            "protocol": card.metrics.get("protocol"),
            "int8": {k: v for k, v in metrics.items() if k != "latency_ms"},  # every scored test set
            "source_int8_headline": {
                "fer2013_test_emotion": headline("fer2013_test", "emotion"),
                "utkface_test_gender": headline("utkface_test", "gender"),
                "fer2013_test_ferplus_emotion": headline("fer2013_test_ferplus", "emotion"),
            },
        },
        derived_from={
            "file": card.file.name,
            "how": (
                "mirror averaging removed from the int8 graph (training/single_pass.py); weights unchanged"
            ),
        },
    )


def make_variant(src: Path, dst: Path | None, datasets: Path, eval_dir: Path) -> Path:
    """``facecast-train single-pass``: write the variant and its card (evaluated on the test sets)."""
    from agent.classifier import single_pass_path
    from training.evaluate import evaluate_tflite_cli

    src = Path(src)
    dst = dst or single_pass_path(src)
    card = read_card(card_path_for(src))
    if not card.flip_tta:
        raise ExportError(f"{src.name}: its card says it is not mirror-averaged (flip_tta false)")
    if card.file is None:
        raise ExportError(f"{src.name}: its card names no file")
    write_single_pass(src, dst)
    metrics = evaluate_tflite_cli(dst, datasets, eval_dir)
    variant = single_pass_card(card, metrics, dst)
    card_path_for(dst).write_text(variant.to_json())
    human = src.with_name(CARD_FILE)
    if human.is_file():  # the shipped pair's card lists the variant's figures too
        write_card_markdown(card, human, variant)
    log.info("wrote %s and its card", dst)
    return dst
