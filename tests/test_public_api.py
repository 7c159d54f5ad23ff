import subprocess
import sys

import vidseg


def test_public_api_names_resolve():
    from vidseg.inference.predictor import VideoPredictor
    from vidseg.io.checkpoint import load_checkpoint
    from vidseg.models.model import build_model, load_model

    assert vidseg.VideoPredictor is VideoPredictor and vidseg.build_model is build_model
    assert vidseg.load_model is load_model and vidseg.load_checkpoint is load_checkpoint
    assert set(vidseg.__all__) >= {"VideoPredictor", "build_model", "load_checkpoint", "__version__"}


def test_import_vidseg_does_not_import_torch():
    code = "import sys, vidseg; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
