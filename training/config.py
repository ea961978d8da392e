"""Training configuration: one YAML (or TOML) file, validated, unknown keys rejected, overridden by
``FACECAST_TRAIN_*`` variables and ``--set KEY=VALUE`` flags with the agent's layering rules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.config.layering import EnvScheme, layered
from agent.errors import ConfigError

__all__ = ["ConfigError", "TrainConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the data lives and how much of it to use (limits are for smoke runs and tests)."""

    root: Path = Path("../shared/datasets")
    fer2013: bool = True
    fer2013_csv: Path | None = None  # use the original fer2013.csv instead of the image folders
    ferplus_blend: float = Field(default=0.3, ge=0.0, lt=0.5)  # weight of FER+ votes in the emotion target
    utkface: bool = True
    aaf: bool = True  # All-Age-Faces (<root>/aaf): gender, mostly East Asian faces, loose framing
    lfw: bool = True  # LFW with its gender lists (<root>/lfw): tight news-photo crops, mostly men
    # LFW training images kept per person: a few public figures have hundreds of images, and
    # uncapped they would be a fifth of LFW's labels. 10 keeps 8,440 of 10,220 training images
    # (5,749 people appear at most 10 times); None: no cap.
    lfw_per_person: int | None = Field(default=10, ge=1)
    # Your own data, framed loosely like UTKFace (a face with some hair and neck). A CSV manifest has
    # the columns path,emotion,gender (either label may be empty; paths relative to the CSV); a folder
    # holds <label>/<image> for one head. Each is split into training and validation by val_fraction.
    manifests: list[Path] = []
    emotion_folders: list[Path] = []
    gender_folders: list[Path] = []
    val_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)  # slice of FER2013 train used for validation
    limit_per_class: int | None = None  # FER2013 images per class (smoke runs)
    gender_limit: int | None = None  # faces per gender-labelled set: UTKFace, AAF, LFW (smoke runs)
    test_limit: int | None = None  # test images per FER class / per gender set (smoke runs only)


class FramingConfig(_Strict):
    """Crop-scale augmentation: the side of the random crop as a fraction of the stored image."""

    canvas: int = 64
    tight_scale: tuple[float, float] = (0.82, 1.0)  # FER2013-style tight crops
    loose_scale: tuple[float, float] = (0.72, 1.0)  # UTKFace-style crops with context
    # AAF's stored image frames the face far more loosely than a detector box (hair, shoulders):
    # its crops reach from about the agent's own crop of the face up to the whole stored image.
    wide_scale: tuple[float, float] = (0.6, 1.05)
    shift: float = 0.06  # max centre shift as a fraction of the image side
    # Written into the card: crop margin per side of a detector box. BlazeFace boxes measured on the
    # datasets: whole FER2013 image = 1.14x the box side (median), whole UTKFace image = 1.07x, so 0.05
    # (1.10x) reproduces both native framings; training crops cover 0.77x-1.14x around that.
    agent_margin: float = 0.05

    @field_validator("tight_scale", "loose_scale", "wide_scale")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        # Above 1.5 the reflected border would outweigh the face itself.
        if not 0.3 <= v[0] <= v[1] <= 1.5:
            raise ValueError(f"must be [low, high] with 0.3 <= low <= high <= 1.5, got {list(v)}")
        return v


class AugmentConfig(_Strict):
    flip: bool = True
    rotation_deg: float = 10.0
    brightness: float = 0.15
    contrast: float = 0.25


class TrainConfig(_Strict):
    seed: int = 1234
    architecture: Literal["vgg-s", "vgg-xs"] = "vgg-s"  # see training.model.BACKBONES
    input_size: int = 48
    dropout: float = 0.4
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 40
    learning_rate: float = 2e-3
    warmup_epochs: int = 1
    early_stopping_patience: int = 8
    max_minutes: float | None = None  # wall-clock budget; the best checkpoint is kept
    class_weight_power: float = Field(default=0.5, ge=0.0, le=1.0)  # 0 none, 1 inverse frequency
    onednn: bool = True  # oneDNN is ~3x faster here; this architecture does not hit its crash
    # Compute dtype while training; "auto" picks mixed bfloat16 where the CPU has a native bfloat16
    # unit (AMX/AVX512-BF16), where it is about 20% faster, and float32 elsewhere, where it is slower.
    # The weights stay float32 either way and export rebuilds a float32 graph, so the int8 file does
    # not depend on it.
    precision: Literal["auto", "float32", "mixed_bfloat16"] = "auto"
    output_dir: Path = Path("runs/default")
    # Start from the weights of an int8 model this project exported (e.g. the shipped
    # models/facecast_int8.tflite) instead of random ones: fine-tuning keeps what it knows and takes a
    # fraction of a from-scratch run's time. Same architecture only; ignored when a run resumes.
    init_from: Path | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    framing: FramingConfig = Field(default_factory=FramingConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    representative_samples: int = 500
    # Average each face with its mirror image inside the exported graph ("auto": only if that
    # raises the validation score; decided on validation data, never on test).
    flip_tta: bool | Literal["auto"] = "auto"
    # Feed the network the centre of its input, enlarged back to full size, inside the exported
    # graph: the central fraction ``zoom`` of each side. The shipped models read the centre better
    # than the whole image they are fed (docs/model-history.md, "A central zoom"). "auto": the cheapest
    # value of ``export.ZOOM_GRID`` within 0.1 points of the best validation mean; 1.0: off.
    zoom: float | Literal["auto"] = "auto"
    # Shift the gender decision by one log-odds offset, chosen on the validation split so that male
    # and female recall are equal there, and bake it into the exported graph. Without it a run can
    # end with a several-point gap between the sexes that no accuracy figure shows.
    gender_balance: bool = True

    @field_validator("zoom", mode="before")
    @classmethod
    def _zoom_in_range(cls, v: object) -> object:
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if v != "auto" and not (number and 0.5 <= float(v) <= 1.0):  # type: ignore[arg-type]
            raise ValueError(f"must be 'auto' or a number from 0.5 to 1.0, got {v!r}")
        return v


ENV_PREFIX = "FACECAST_TRAIN_"  # FACECAST_TRAIN_EPOCHS=3, FACECAST_TRAIN_DATA__ROOT=/data


def _field_annotation(loc: tuple[str, ...]) -> Any:
    """The annotation of the field at ``loc`` (``("data", "root")``), or None for an unknown key."""
    model: type[BaseModel] = TrainConfig
    annotation: Any = None
    for i, part in enumerate(loc):
        info = model.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
        if i < len(loc) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return None
            model = annotation
    return annotation


def _typed(annotation: Any, text: str) -> Any:
    """A value from the environment or ``--set`` (always a string) for a field: kept as the string
    where the field takes text (a path, a name), read as YAML elsewhere (``3``, ``true``,
    ``[0.8, 1.1]``, ``null``), so ``epochs=3`` and ``output_dir=0123`` both mean what they say."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if type(None) in options and text.strip().lower() in ("null", "none", "~"):
        return None

    def textual(a: Any) -> bool:
        literal_text = get_origin(a) is Literal and all(isinstance(x, str) for x in get_args(a))
        return a in (str, Path, type(None)) or literal_text

    return text if all(textual(a) for a in options) else yaml.safe_load(text)


def load_config(
    path: Path | None,
    overrides: Mapping[str, object] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> TrainConfig:
    """File < ``FACECAST_TRAIN_*`` variables < ``--set`` flags, by the agent's own layering rules
    (:mod:`agent.config.layering`); a one-line ``ConfigError`` naming the key and where it was set."""
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    scheme = EnvScheme(ENV_PREFIX, tuple(TrainConfig.model_fields), every_variable=True)
    flags = dict(overrides or {})
    layers = layered(
        path,
        scheme,
        os.environ if environ is None else environ,
        overrides=flags,
        flag_names={key: f"--set {key}" for key in flags},
    )
    for loc in layers.origins:  # values from the environment and flags arrive as text
        node = layers.data
        for part in loc[:-1]:
            node = node[part]
        if isinstance(node.get(loc[-1]), str):
            node[loc[-1]] = _typed(_field_annotation(loc), node[loc[-1]])
    base = path.parent if path is not None else Path.cwd()
    try:
        cfg = TrainConfig.model_validate(layers.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            msg = (
                "unknown key"
                if err["type"] == "extra_forbidden"
                else err["msg"].removeprefix("Value error, ")
            )
            problems.append(layers.located(loc, msg))
        raise ConfigError(f"config error: {'; '.join(problems)}") from None

    # Relative input paths in a config file are relative to that file, so configs are portable; the
    # output folder is relative to where the command runs.
    def under(root: Path, p: Path) -> Path:
        return p if p.is_absolute() else (root / p).resolve()

    cfg.data.root = under(base, cfg.data.root)
    cfg.output_dir = under(Path.cwd(), cfg.output_dir)
    cfg.data.manifests = [under(base, m) for m in cfg.data.manifests]
    cfg.data.emotion_folders = [under(base, f) for f in cfg.data.emotion_folders]
    cfg.data.gender_folders = [under(base, f) for f in cfg.data.gender_folders]
    if cfg.data.fer2013_csv is not None:
        cfg.data.fer2013_csv = under(base, cfg.data.fer2013_csv)
    if cfg.init_from is not None:
        cfg.init_from = under(base, cfg.init_from)
    return cfg
