"""How batches are formed changes how long all-MiniLM-L6-v2 takes to embed the same sentences.

Encodes N bench sentences in batches of 64 with `SentenceTransformer.encode`, the batches formed
in five ways, alternating the ways in each repetition:

- `one call`: one `encode` call over all texts (sentence-transformers sorts them by characters);
- `chars/W`, `tokens/W`: windows of W texts sorted by character length or by token count, cut into
  batches of 64, one `encode` call per batch (embedline uses token count, W = 2048).

It also prints padded tokens / real tokens for each way (the work a transformer does on padding).

    python bench/bench_batching.py --n 6000 --reps 2
"""

from __future__ import annotations

import argparse

import _common

BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="sentences (default 6000)")
    parser.add_argument("--reps", type=int, default=2, help="repetitions of each way (default 2)")
    args = parser.parse_args()
    info = _common.header(f"batch formation, minilm, {args.n} sentences, batch {BATCH}, {args.reps} reps")

    from sentence_transformers import SentenceTransformer

    texts = _common.texts(args.n)
    st = SentenceTransformer(_common.minilm_folder(), device="cpu")
    limit = st.max_seq_length
    tokens = [min(len(ids), limit) for ids in st.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def windows(size: int, key) -> list[list[int]]:
        batches = []
        for start in range(0, len(texts), size):
            order = sorted(range(start, min(len(texts), start + size)), key=key)
            batches += [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
        return batches

    ways: dict[str, list[list[int]] | None] = {
        "one call": None,
        "chars/512": windows(512, lambda i: len(texts[i])),
        "tokens/512": windows(512, lambda i: tokens[i]),
        "chars/2048": windows(2048, lambda i: len(texts[i])),
        "tokens/2048": windows(2048, lambda i: tokens[i]),
    }
    one_call = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # what encode() does inside
    one_call_batches = [one_call[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    padding = {
        name: sum(max(tokens[i] for i in b) * len(b) for b in (batches or one_call_batches)) / sum(tokens)
        for name, batches in ways.items()
    }
    st.encode(texts[:256], batch_size=BATCH)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in ways}
    for rep in range(args.reps):
        for name, batches in ways.items():
            with _common.Timer() as t:
                if batches is None:
                    st.encode(texts, batch_size=BATCH, normalize_embeddings=True)
                else:
                    for batch in batches:
                        st.encode([texts[i] for i in batch], batch_size=BATCH, normalize_embeddings=True)
            times[name].append(t.seconds)
            print(f"rep {rep + 1} {name:<12} {t.seconds:7.2f} s", flush=True)
    base = _common.median(times["one call"])
    for name in ways:
        m = _common.median(times[name])
        print(f"median {name:<12} {m:7.2f} s  padded/real tokens {padding[name]:.2f}  time vs one call {m / base:.2f}")
    _common.save("batching-minilm", info, n=args.n, batch_size=BATCH, reps=args.reps, times=times,
                 median={name: _common.median(v) for name, v in times.items()}, padding=padding)


if __name__ == "__main__":
    main()
