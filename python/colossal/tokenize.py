#===- tokenize.py - Text files to a raw token stream for colossal-run ----===#
"""Tokenize text files into a raw token stream (``.bin``) for ``colossal-run --data``.

Usage (from the repository root):

    PYTHONPATH=python python3 -m colossal.tokenize --tokenizer NAME_OR_PATH|bytes \\
        -o OUT.bin [--dtype uint16|uint32] [--split file|line|blank] \\
        [--eos ID | --no-eos] [--byte-offset N] FILE...

The output is what ``colossal-run --data OUT.bin --data-dtype D`` reads:
little-endian tokens and nothing else (nanoGPT's and llm.c's ``.bin`` shards
without their header).

* Documents: each FILE is one document (``--split file``, the default), or
  each non-empty line is one (``--split line``), or each block of text
  between blank lines is one (``--split blank``). The EOS token is written
  after every document, so consecutive documents are separated by it (and
  the stream ends with it), as nanoGPT's and llm.c's GPT-2 shards do with
  ``<|endoftext|>``. ``--no-eos`` writes none.
* ``--tokenizer NAME_OR_PATH``: ``transformers.AutoTokenizer.from_pretrained(
  NAME_OR_PATH, local_files_only=True)`` (a hub name in the local cache or a
  saved folder; nothing is downloaded), encoding without special tokens;
  EOS is the tokenizer's ``eos_token_id`` unless ``--eos`` gives one.
* ``--tokenizer bytes``: no transformers needed. Token = byte value +
  ``--byte-offset`` (default 0) of the UTF-8 text; EOS = offset + 256; the
  vocabulary is offset + 257 ids. Use an offset to keep a model's special
  ids (pad, bos) out of the text.
* ``--dtype``: ``uint16`` unless the vocabulary exceeds 65535 ids, then
  ``uint32``; asking for ``uint16`` with a larger vocabulary is an error.

Prints each file's documents and tokens, then the total and the colossal-run
flags to read the file. The output is written to a temporary file beside it
and renamed, so a failed run leaves no truncated stream. Exit status: 0; 1
when a file cannot be read or written or the tokenizer fails; 2 on bad usage
or a missing package.
"""

import argparse
import array
import os
import sys

BYTES_VOCAB = 256            # byte values; EOS is offset + 256
UINT16_MAX_VOCAB = 65536     # ids 0..65535 fit uint16
TYPECODES = {"uint16": "H", "uint32": "I"}


class UsageError(Exception):
    """Bad arguments or a missing package (exit 2)."""


class TokenizeError(Exception):
    """A file or the tokenizer failed (exit 1)."""


def split_documents(text, how):
    """The documents of one file's text: the whole text, its non-empty lines or its blank-line blocks.

    Empty documents (an empty file, whitespace-only blocks) are dropped, so
    they add no lone EOS.
    """
    if how == "file":
        docs = [text]
    elif how == "line":
        docs = text.splitlines()
    else:
        docs, block = [], []
        for line in text.splitlines():
            if line.strip():
                block.append(line)
            elif block:
                docs.append("\n".join(block))
                block = []
        if block:
            docs.append("\n".join(block))
    return [d for d in docs if d.strip()]


class ByteTokenizer:
    """UTF-8 bytes + offset; EOS = offset + 256."""

    def __init__(self, offset):
        self.offset = offset
        self.vocab_size = offset + BYTES_VOCAB + 1
        self.eos_token_id = offset + BYTES_VOCAB
        self.name = f"bytes (offset {offset})"

    def encode(self, text):
        return [b + self.offset for b in text.encode("utf-8")]


class HFTokenizer:
    """A transformers tokenizer loaded offline."""

    def __init__(self, spec):
        try:
            import transformers
        except ImportError as e:
            raise UsageError(f"--tokenizer {spec} needs transformers ({e}); "
                             f"--tokenizer bytes needs nothing")
        transformers.logging.set_verbosity_error()  # no "longer than max length" warnings
        try:
            self.tok = transformers.AutoTokenizer.from_pretrained(spec, local_files_only=True)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"cannot load tokenizer {spec!r} offline: {first}")
        self.vocab_size = len(self.tok)  # added tokens included
        self.eos_token_id = self.tok.eos_token_id
        self.name = f"{spec} ({type(self.tok).__name__})"

    def encode(self, text):
        return self.tok(text, add_special_tokens=False)["input_ids"]


def choose_dtype(requested, vocab_size):
    """'uint16' or 'uint32' for a vocabulary of vocab_size ids (requested: None = automatic)."""
    if requested is None:
        return "uint16" if vocab_size <= UINT16_MAX_VOCAB else "uint32"
    if requested == "uint16" and vocab_size > UINT16_MAX_VOCAB:
        raise UsageError(f"--dtype uint16 holds ids up to 65535, but the vocabulary has "
                         f"{vocab_size} ids; use --dtype uint32")
    return requested


def tokenize_files(paths, tokenizer, how, eos, dtype, out, log=print):
    """Tokenize paths into out; return the number of tokens written."""
    code = TYPECODES[dtype]
    limit = (1 << (8 * array.array(code).itemsize)) - 1
    tmp = out + ".tmp"
    total = 0
    try:
        with open(tmp, "wb") as f:
            for path in paths:
                try:
                    with open(path, encoding="utf-8") as src:
                        text = src.read()
                except (OSError, UnicodeDecodeError) as e:
                    raise TokenizeError(f"{path}: {e}")
                docs = split_documents(text, how)
                count = 0
                for doc in docs:
                    ids = array.array(code)
                    try:
                        toks = tokenizer.encode(doc)
                    except Exception as e:  # tokenizers raise their own types
                        raise TokenizeError(f"{path}: the tokenizer failed: "
                                            f"{type(e).__name__}: {e}")
                    if toks and (max(toks) > limit or min(toks) < 0):
                        bad = max(toks) if max(toks) > limit else min(toks)
                        raise TokenizeError(f"{path}: token {bad} does not fit {dtype}")
                    ids.extend(toks)
                    if eos is not None:
                        ids.append(eos)
                    if sys.byteorder != "little":
                        ids.byteswap()
                    ids.tofile(f)
                    count += len(ids)
                total += count
                log(f"colossal.tokenize: {path}: {len(docs)} documents, {count} tokens")
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return total


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m colossal.tokenize",
        description="Tokenize text files into a raw token stream for colossal-run --data.")
    ap.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    ap.add_argument("-o", "--output", required=True, help="the .bin to write")
    ap.add_argument("--tokenizer", required=True,
                    help="a transformers tokenizer (hub name in the local cache, or a "
                         "folder), or 'bytes'")
    ap.add_argument("--dtype", choices=sorted(TYPECODES),
                    help="token width (default: uint16, uint32 for vocabularies over 65535)")
    ap.add_argument("--split", choices=["file", "line", "blank"], default="file",
                    help="what a document is: a file (default), a non-empty line, or a "
                         "block between blank lines")
    ap.add_argument("--eos", type=int, help="the id written after each document "
                                            "(default: the tokenizer's EOS)")
    ap.add_argument("--no-eos", action="store_true", help="write no EOS")
    ap.add_argument("--byte-offset", type=int, default=0,
                    help="--tokenizer bytes: added to each byte value (default 0)")
    args = ap.parse_args(argv)
    if args.eos is not None and args.no_eos:
        ap.error("--eos and --no-eos exclude each other")
    if args.byte_offset < 0:
        ap.error(f"--byte-offset must be >= 0, got {args.byte_offset}")
    if args.byte_offset and args.tokenizer != "bytes":
        ap.error("--byte-offset needs --tokenizer bytes")
    if args.eos is not None and args.eos < 0:
        ap.error(f"--eos must be >= 0, got {args.eos}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.tokenizer == "bytes":
            tok = ByteTokenizer(args.byte_offset)
        else:
            tok = HFTokenizer(args.tokenizer)
        eos = None if args.no_eos else (args.eos if args.eos is not None else tok.eos_token_id)
        if eos is None and not args.no_eos:
            raise UsageError(f"the tokenizer {tok.name} has no EOS token; give --eos ID or "
                             f"--no-eos")
        vocab = max(tok.vocab_size, (eos or 0) + 1)
        dtype = choose_dtype(args.dtype, vocab)
        total = tokenize_files(args.files, tok, args.split, eos, dtype, args.output)
    except UsageError as e:
        print(f"colossal.tokenize: error: {e}", file=sys.stderr)
        return 2
    except (TokenizeError, OSError) as e:
        print(f"colossal.tokenize: error: {e}", file=sys.stderr)
        return 1
    print(f"colossal.tokenize: wrote {args.output}: {total} tokens, {dtype}, tokenizer "
          f"{tok.name}, vocabulary {vocab}, eos {eos}")
    print(f"colossal.tokenize: train with: colossal-run PLAN.cplan --data {args.output} "
          f"--data-dtype {dtype} --steps N")
    return 0


if __name__ == "__main__":
    sys.exit(main())
