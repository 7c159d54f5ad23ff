"""The `vidseg` command line: parse, call the library, print.

Every subcommand is registered by an `_add_<name>` function below and runs through a `_run_<name>`
handler. User errors (`VidsegError`) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from vidseg import __version__
from vidseg.errors import VidsegError

Handler = Callable[[argparse.Namespace], int]


# --- demo -------------------------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment a short clip and write an overlay mp4")
    p.add_argument("--source", help="video file, frame folder or image (default: a generated clip)")
    p.add_argument("--out", default="vidseg_demo", help="output folder (default: ./vidseg_demo)")
    p.add_argument("--frames", type=int, default=48, help="frames of the generated clip")
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from vidseg.demo import run_demo

    result = run_demo(source=args.source, out_dir=args.out, num_frames=args.frames, log=print)
    print(f"overlay written to {result}")
    return 0


# --- entry point ------------------------------------------------------------------------------------------

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidseg", description="Universal video segmentation: VIS, VPS, VSS and image tasks."
    )
    parser.add_argument("--version", action="version", version=f"vidseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except VidsegError as e:
        print(f"vidseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vidseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
