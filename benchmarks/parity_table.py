"""Max |diff| against the official outputs (`../shared/parity`) per tensor group, for this code and a peer.

    python benchmarks/parity_table.py                       # this checkout only
    python benchmarks/parity_table.py --peer /tmp/vidseg_b5014e3/src   # + an older vidseg source tree

Each fixture model (A Mask2Former COCO panoptic, B DVIS++ online VIPSeg, C DVIS++ offline YouTube-VIS 2019) is
rebuilt with the fixture README's weight generator and imported with this checkout's converter; the peer (run
in a subprocess with its tree first on `sys.path`) builds its own model from the same config and loads the
same converted weights, so both sides differ only in what their model and video code compute. Groups use the
`load_model(...).model.step` / `refine` API both versions have. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PARITY = Path(os.environ.get("VIDSEG_PARITY", REPO.parent / "shared" / "parity"))
FIXTURES = {"A": ("m2f_r50_coco_panoptic", "coco_panoptic"), "B": ("dvis_plus_r50_vipseg_online", "vipseg"),
            "C": ("dvis_plus_r50_ytvis19_offline", "ytvis19")}


def convert(name: str, dataset: str, out: Path) -> Path:
    """The fixture's official weights -> a vidseg checkpoint directory (this checkout's converter)."""
    sys.path.insert(0, str(REPO / "tests"))
    from parity import official_state_dict

    from vidseg.published import convert_weights

    src = out / f"{name}.pth"
    state = {k: torch.from_numpy(v) for k, v in official_state_dict(PARITY / name).items()}
    torch.save({"model": state}, src)
    return convert_weights("dvis_plus" if "dvis" in name else "detectron2", src, out / name, dataset=dataset)


def _load(ckpt: str) -> torch.nn.Module:
    """The checkpoint's model, built from the config fields this vidseg version knows (an older version
    cannot read a newer config.json as a whole)."""
    import dataclasses

    from safetensors.torch import load_file

    from vidseg.config import ModelConfig, from_dict
    from vidseg.models.model import METHOD_OF_STAGE, build_model

    def known(cls: type, data: dict) -> dict:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = __import__("typing").get_type_hints(cls)
        return {k: known(hints[k], v) if dataclasses.is_dataclass(hints[k]) else v
                for k, v in data.items() if k in fields}

    manifest = json.loads((Path(ckpt) / "manifest.json").read_text())
    config = json.loads((Path(ckpt) / "config.json").read_text())["model"]
    config["method"] = METHOD_OF_STAGE[manifest["stage"]]
    model = build_model(from_dict(ModelConfig, known(ModelConfig, config)))
    target = model.segmenter if manifest["stage"] == "segmenter" else model
    target.load_state_dict(load_file(str(Path(ckpt) / "model.safetensors")))
    return model.eval()


def measure(ckpt: str, name: str) -> dict[str, float]:
    """Max |diff| per tensor group (runs in whichever vidseg is first on sys.path)."""
    from safetensors.torch import load_file

    inputs = load_file(str(PARITY / name / "inputs.safetensors"))
    out = load_file(str(PARITY / name / "outputs.safetensors"))
    model = _load(ckpt)

    def diff(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.float() - b.float()).abs().max())

    if name.startswith("m2f"):
        images = [inputs["image0.rgb_uint8"].numpy(), inputs["image1.rgb_uint8"].numpy()]
        with torch.no_grad():
            seg = model.segmenter(model.segmenter.frames_to_batch(images))
        return {"segmenter class logits": diff(seg.class_logits, out["segmenter.class_logits"]),
                "segmenter mask logits": diff(seg.mask_logits, out["segmenter.mask_logits"])}
    frames = inputs["frames.rgb_uint8"]
    state, steps = model.init_state(), []
    with torch.no_grad():
        for t in range(frames.shape[0]):
            step, state = model.step(model.segmenter.frames_to_batch([frames[t].numpy()]), state)
            steps.append(step)
    cls = torch.stack([s.frame.class_logits[0] for s in steps])
    result = {
        "segmenter class logits": diff(torch.stack([s.segmenter.class_logits[0] for s in steps]),
                                       out["segmenter.class_logits"]),
        "tracker class logits, frame 0": diff(cls[0], out["tracker.pred_logits"][0]),
        "tracker class logits, frames 1+": diff(cls[1:], out["tracker.pred_logits"][1:]),
        "tracker matching equal": float(torch.equal(torch.stack([s.frame.indices[0] for s in steps]),
                                                    out["tracker.match_indices"])),
        "video class logits (online mean)": diff(cls.mean(0), out.get("video.aggregated_class_logits",
                                                                      out.get("online.video.aggregated_class_logits"))),
    }
    if "tracker.pred_masks" in out:
        result["tracker mask logits"] = diff(torch.stack([s.frame.mask_logits[0] for s in steps], 1),
                                             out["tracker.pred_masks"])
    if "refiner.pred_logits" in out:
        with torch.no_grad():
            clip = model.refine(steps)
        result["refiner class logits"] = diff(clip.class_logits[0], out["refiner.pred_logits"])
        result["refiner mask logits"] = diff(clip.mask_logits[0].transpose(0, 1), out["refiner.pred_masks"])
        del result["video class logits (online mean)"]  # offline: the refiner's logits are the video's
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", help="src/ folder of another vidseg version to measure with the same weights")
    parser.add_argument("--smoke", action="store_true", help="fixture A only")
    parser.add_argument("--measure", nargs=2, metavar=("CKPT", "FIXTURE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the peer's side, in its own interpreter
        print(json.dumps(measure(*args.measure)))
        return
    if not PARITY.is_dir():
        print(json.dumps({"error": f"{PARITY} missing (set VIDSEG_PARITY)"}))
        return
    table: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (name, dataset) in FIXTURES.items():
            if args.smoke and key != "A":
                continue
            ckpt = convert(name, dataset, Path(tmp))
            table[key] = {"this": measure(str(ckpt), name)}
            if args.peer:
                env = dict(os.environ, PYTHONPATH=args.peer)
                run = subprocess.run([sys.executable, __file__, "--measure", str(ckpt), name], env=env,
                                     capture_output=True, text=True, check=True)
                table[key]["peer"] = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
