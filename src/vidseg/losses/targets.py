"""Ground-truth targets seen by the matcher and the criterion.

Target masks may be at the (padded) input-image resolution while predictions are at 1/4 of it: everything that
compares them samples both at the same normalised point coordinates, so only the covered area must agree (the
mask must be padded exactly like the image the model saw), not the resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class FrameTargets:
    """The annotated objects of one frame.

    Attributes:
        class_ids: [N] int64 contiguous class index in 0..K-1.
        masks: [N, H, W] bool or float in [0, 1], covering the padded input image.
        instance_ids: [N] int64 identity of each object within its video, or None for image data.
    """

    class_ids: Tensor
    masks: Tensor
    instance_ids: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.class_ids.shape[0]
        if self.class_ids.dim() != 1 or self.masks.dim() != 3 or self.masks.shape[0] != n:
            raise ValueError(
                "FrameTargets: expected class_ids [N] and masks [N, H, W], got "
                f"{tuple(self.class_ids.shape)} and {tuple(self.masks.shape)}"
            )
        if self.instance_ids is not None and tuple(self.instance_ids.shape) != (n,):
            raise ValueError(f"FrameTargets: instance_ids {tuple(self.instance_ids.shape)}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    def to(self, device: torch.device | str) -> FrameTargets:
        ids = None if self.instance_ids is None else self.instance_ids.to(device)
        return FrameTargets(self.class_ids.to(device), self.masks.to(device), ids)

    @classmethod
    def empty(cls, height: int, width: int, device: torch.device | str = "cpu") -> FrameTargets:
        """A frame without objects."""
        return cls(
            torch.zeros(0, dtype=torch.long, device=device),
            torch.zeros(0, height, width, dtype=torch.bool, device=device),
        )


# A hand-written __init__: `present` is optional to pass but always a tensor once built.
@dataclass(init=False)
class ClipTargets:
    """The objects of one clip of T frames: every instance that appears in at least one frame.

    Attributes:
        class_ids: [N] int64 clip-level class of each instance.
        masks: [N, T, H, W] bool or float; empty in frames where the instance is absent.
        present: [N, T] bool, whether the instance is annotated in each frame. Defaults to "mask not empty"
            (an annotated but fully occluded instance counts as absent, as upstream VIS loaders do).
        instance_ids: [N] int64 identity of each instance, or None.
    """

    class_ids: Tensor
    masks: Tensor
    present: Tensor
    instance_ids: Tensor | None

    def __init__(
        self, class_ids: Tensor, masks: Tensor, present: Tensor | None = None, instance_ids: Tensor | None = None
    ) -> None:
        n = class_ids.shape[0]
        if class_ids.dim() != 1 or masks.dim() != 4 or masks.shape[0] != n:
            raise ValueError(
                f"ClipTargets: expected class_ids [N] and masks [N, T, H, W], got "
                f"{tuple(class_ids.shape)} and {tuple(masks.shape)}"
            )
        if present is None:
            present = masks.flatten(2).ne(0).any(-1)
        if tuple(present.shape) != tuple(masks.shape[:2]):
            raise ValueError(f"ClipTargets: present {tuple(present.shape)}, expected {tuple(masks.shape[:2])}")
        self.class_ids = class_ids
        self.masks = masks
        self.present = present.bool()
        self.instance_ids = instance_ids

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.masks.shape[1])

    def frame(self, t: int, only_present: bool = False) -> FrameTargets:
        """Targets of frame t.

        By default every clip instance is kept, with an empty mask where it is absent: this is what the
        per-frame loss of clip training uses (a query assigned to an instance keeps predicting its class and
        learns an empty mask while the instance is away). `only_present=True` keeps those visible at t.
        """
        keep = self.present[:, t] if only_present else torch.ones_like(self.present[:, t])
        ids = None if self.instance_ids is None else self.instance_ids[keep]
        return FrameTargets(self.class_ids[keep], self.masks[keep, t], ids)

    def frames(self) -> list[FrameTargets]:
        """`frame(t)` for t = 0..T-1: the per-frame targets for the criterion."""
        return [self.frame(t) for t in range(self.num_frames)]

    def first_frames(self) -> Tensor:
        """[N] int64 index of the first frame where each instance is present; -1 for never."""
        t = self.present.shape[1]
        order = torch.arange(t, 0, -1, device=self.present.device)
        # argmax of present * (T - t) is the first present frame; rows without any presence give -1.
        first = (self.present.long() * order).argmax(dim=1)
        return torch.where(self.present.any(dim=1), first, torch.full_like(first, -1))
