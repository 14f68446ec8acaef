"""The `voxc` command line: assembles every command group (compiler: build, parity, bench, report,
inspect; voice: train, voice-report, synth) so that neither group imports the other. User mistakes end
in one `voxc: error: ...` line and exit status 2; a failed parity gate exits 1."""
from __future__ import annotations

import argparse
import sys

from voxc.core.errors import VoxcError

EXIT_USER = 2


def parser() -> argparse.ArgumentParser:
    from voxc.compiler import cli as compiler_cli
    from voxc.voice import cli as voice_cli
    p = argparse.ArgumentParser(prog="voxc", description="Compile an expressive TTS stack into verified artifacts.")
    sub = p.add_subparsers(dest="command", required=True)
    compiler_cli.register(sub)
    voice_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except VoxcError as exc:
        print(f"voxc: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except BrokenPipeError:           # e.g. `voxc report | head`: the reader left; nothing to say
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("voxc: interrupted; no partial artifact was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
