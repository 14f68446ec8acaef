"""The `voxc` command line: assembles every command group (compiler: build, parity, bench, report,
inspect; voice: train, voice-report, synth; speech: speak, serve, loadtest) so that neither group imports the other. Exit status: 1 a
parity gate failed; 2 a user's mistake (one `voxc: error: ...` line saying what and what to do); 3 an
internal error (one line and the path of a log file holding the traceback). Argument errors are one line
too, and a reader that leaves early (`voxc build | head -1`) neither stops a command nor changes its exit
status (core/reader_gone.py)."""
from __future__ import annotations

import argparse
import sys

from voxc.core.errors import VoxcError, first_line

EXIT_USER, EXIT_INTERNAL = 2, 3


def _internal_error(exc: BaseException) -> int:
    """A bug, not a user's mistake: one line naming it and a log file with the traceback."""
    import tempfile
    import traceback
    try:
        fd, path = tempfile.mkstemp(prefix="voxc-error-", suffix=".log")
        with open(fd, "w") as f:
            f.write("".join(traceback.format_exception(exc)))
        where = f"; the traceback is in {path}"
    except OSError:
        where = ""
    print(f"voxc: internal error: {type(exc).__name__}: {first_line(exc)}{where} (please report it)", file=sys.stderr)
    return EXIT_INTERNAL


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows an option's default where it has one worth saying (not None/False, not said already)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one `voxc: error:` line (no usage block) and exit status 2, and --help
    shows each option's default; subcommand parsers inherit it (add_subparsers makes parsers of the parent's class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelp)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        command = self.prog.removeprefix("voxc").strip()
        self.exit(EXIT_USER, f"voxc: error: {command + ': ' if command else ''}{message}; see "
                             f"`{self.prog} --help`\n")


def parser() -> argparse.ArgumentParser:
    from voxc.compiler import cli as compiler_cli
    from voxc import export_cli, int8_study_cli, speech_cli
    from voxc.voice import cli as voice_cli
    import importlib.metadata
    p = OneLineParser(prog="voxc", description="Compile an expressive TTS stack into verified artifacts.")
    p.add_argument("--version", action="version", version=f"voxc {importlib.metadata.version('voxc')}")
    sub = p.add_subparsers(dest="command", required=True)
    compiler_cli.register(sub)
    int8_study_cli.register(sub)
    export_cli.register(sub)
    voice_cli.register(sub)
    speech_cli.register(sub)
    return p


def _announce_environment(args, argv: list[str]) -> None:
    """Say so when a default came from the environment rather than the command line."""
    import os
    if getattr(args, "target", None) and getattr(args, "folder", None) is None and os.environ.get("TARGET") == args.target \
            and not any(a == "--target" or a.startswith("--target=") for a in argv):
        print(f"voxc: --target {args.target} (from the TARGET environment variable)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from voxc.core import reader_gone
    reader_gone.install()             # `voxc build | head -1`: the build goes on to its own exit status
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    _announce_environment(args, argv)
    try:
        return args.func(args)
    except VoxcError as exc:
        print(f"voxc: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("voxc: interrupted; no partial artifact was kept", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- anything else is a bug: one line and a log, never a traceback
        return _internal_error(exc)


if __name__ == "__main__":
    sys.exit(main())
