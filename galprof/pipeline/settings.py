"""What one pipeline run is asked to do (`Settings`) and what it did (`Summary`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from galprof.stages import ANALYSES_AT_ONCE, Stage


@dataclass
class RemoteSettings:
    """Where the offload sends public items (`galprof scan --remote`)."""

    url: str
    token: str
    ca_file: Path | None = None          # a CA bundle for a self-signed server


@dataclass
class Settings:
    stages: list[Stage] = field(default_factory=list)
    frame_step: int = 5                  # every N-th video frame...
    max_frames: int = 40                 # ...widened so at most this many cover the clip
    decode_workers: int = 2              # threads decoding ahead of inference
    analyses_at_once: int = ANALYSES_AT_ONCE   # frames analysed at once (at most the cores)
    max_decode_mb: int = 512             # memory one full-size decode may take
    remote: RemoteSettings | None = None
    # Privacy rules' thresholds (galprof.privacy.PrivacyThresholds); None: the defaults.
    privacy: object | None = None

    def version_of(self, stage: Stage, kind: str | None) -> str:
        """The version a cached result must have: a video's results also depend on which
        frames were sampled, so the sampling settings are part of its key."""
        if kind == "video":
            from galprof.gallery.frames import DECODE
            share = DECODE.keyframes_when_they_keep
            keyframes = f"/keyframes{share:g}" if share < 1 else ""
            return f"{stage.version}+frames/{self.frame_step}/{self.max_frames}{keyframes}"
        return stage.version


@dataclass
class Summary:
    roots: list[str] = field(default_factory=list)
    photos: int = 0               # media present under the roots after the run
    videos: int = 0
    frames: int = 0               # frames analysed by this run
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    analysed: int = 0             # items whose stages ran in this run
    warnings: int = 0
    failed: int = 0               # files that failed in this run (new failures)
    failures: list[dict] = field(default_factory=list)    # {"path", "reason"} of those
    known_failures: int = 0       # files that fail now, including earlier runs' (galprof errors)
    walk_problems: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    # Where the time went: decoding (summed over the decode threads, which overlap
    # inference) and each stage's work (summed over the two analysing threads, which
    # overlap each other); `galprof benchmark` reports them.
    decode_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_busy_seconds: float = 0.0     # wall time in which some thread ran a stage
    late_items: int = 0           # items read again for the late pass (pipeline/ingest.py)
    late_seconds: float = 0.0     # its wall time
    passes: dict[str, dict] = field(default_factory=dict)  # per pass: ran or not, and what it found
    remote: dict | None = None    # the offload's summary when --remote was given

    def to_dict(self) -> dict:
        return asdict(self)
