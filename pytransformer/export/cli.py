"""`pytransformer export`: write a translator in another engine's format.

    pytransformer export ctranslate2 translator.safetensors ct2-model
    pytransformer export ctranslate2 translator.safetensors ct2-int8 --quantization int8

Registered by the main command line with `add_parser(subparsers)`; the
command itself is `cmd_export(args)`.
"""
import argparse
import textwrap

from pytransformer.export._formats import QUANTIZATIONS

__all__ = ["add_parser", "cmd_export"]

_HELP = "write a translator as a CTranslate2 model directory (needs the ctranslate2 package)"


def add_parser(subparsers):
    """Add the `export` sub-command to an argparse subparsers object; returns
    its parser (set_defaults(func=cmd_export, subparser=it))."""
    p = subparsers.add_parser(
        "export", help=_HELP, description=textwrap.fill(
            "Write a translator checkpoint (a file written by `pytransformer train`, or the "
            "shipped model) as a CTranslate2 model directory, which "
            "ctranslate2.Translator(DIR) loads; the exported model decodes as "
            "`pytransformer translate` does (greedy; beam search with length_penalty=0 on "
            "both sides). Needs `pip install 'pytransformer-cpu[ctranslate2]'`.", 79,
            break_on_hyphens=False),
        epilog="examples:\n"
               "  pytransformer export ctranslate2 translator.safetensors ct2-model\n"
               "  pytransformer export ctranslate2 translator.safetensors ct2-int8 "
               "--quantization int8",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", choices=["ctranslate2"], help="the engine to export to")
    p.add_argument("model", metavar="MODEL", help="a translator .safetensors file")
    p.add_argument("out", metavar="DIR",
                   help="the model directory to write (must not exist, or be empty)")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default=None, metavar="TYPE",
                   help=f"weight type: {', '.join(QUANTIZATIONS)} (default: float32; "
                        f"bfloat16 types need PyTorch)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty DIR, replacing the CTranslate2 model files in "
                        "it")
    p.set_defaults(func=cmd_export, subparser=p)
    return p


def cmd_export(args):
    """Run `export`: load MODEL, write DIR, print what was written (exit 0);
    every error is a one-line CLIError (exit 2)."""
    import time
    from pytransformer.cli import CLIError, _check_output_dir, _load_translator
    from pytransformer.export.ctranslate2 import ExportError, export_ctranslate2

    t0 = time.perf_counter()
    _check_output_dir("DIR", args.out)
    translator = _load_translator(args.model, "MODEL")
    try:
        export_ctranslate2(translator, args.out, quantization=args.quantization,
                           force=args.force)
    except ImportError as e:
        raise CLIError(str(e)) from None
    except ExportError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot write {args.out}: {e.strerror or e}", code=1) from None
    c = translator.model.config
    print(f"wrote {args.out}: CTranslate2 TransformerSpec, {c.num_encoder_layers}+"
          f"{c.num_decoder_layers} layers, d_model {c.d_model}, "
          f"{args.quantization or 'float32'} weights, in {time.perf_counter() - t0:.1f} s")
    print(f"use: ctranslate2.Translator({args.out!r}).translate_batch([tokens], "
          f"max_decoding_length={c.max_len})  (tokens: pytransformer.data.tokenize(text))")
    return 0
