#!/usr/bin/env python3
"""Makes a small tokenizer.json for the tiny test checkpoints from the real Gemma tokenizer.

    tools/make-tiny-tokenizer.py REAL_TOKENIZER_JSON CONFIG_JSON OUT_JSON

It keeps the real file's normalizer, pre-tokenizer, post-processor and decoder, and builds a vocabulary
that fits the tiny model's: the special tokens at the ids its config.json names (bos/eos/pad, the
image/audio begin/end/soft tokens; <start_of_turn>/<end_of_turn> at the real ids 105/106), byte-fallback
pieces, single characters, then the real merges in rank order while their pieces fit below the vision
vocabulary offset. Text then tokenises into ids the tiny model can embed, so the CLI's text paths run
end to end on random weights. Output is deterministic.
"""
import json
import sys

real = json.load(open(sys.argv[1]))
cfg = json.load(open(sys.argv[2]))
text = cfg["text_config"]
limit = min(cfg["vision_config"]["vocab_offset"], cfg["boi_token_id"], cfg["boa_token_id"])

special = {
    text.get("pad_token_id", 0): "<pad>",
    text.get("eos_token_id", 1) if isinstance(text.get("eos_token_id", 1), int) else text["eos_token_id"][0]: "<eos>",
    text.get("bos_token_id", 2): "<bos>",
    3: "<unk>",
    105: "<start_of_turn>",
    106: "<end_of_turn>",
    cfg["boi_token_id"]: "<start_of_image>",
    cfg["eoi_token_id"]: "<end_of_image>",
    cfg["image_token_id"]: "<image_soft_token>",
    cfg["boa_token_id"]: "<start_of_audio>",
    cfg["eoa_token_id"]: "<end_of_audio>",
    cfg["audio_token_id"]: "<audio_soft_token>",
}
vocab = {piece: i for i, piece in special.items()}
next_id = 4


def add(piece):
    global next_id
    while next_id in special:
        next_id += 1
    if piece in vocab or next_id >= limit:
        return False
    vocab[piece] = next_id
    next_id += 1
    return True


for b in range(256):
    add("<0x%02X>" % b)
for ch in ["\u2581", "\n", "\t"] + [chr(c) for c in range(33, 127)]:
    add(ch)
merges = []
for m in real["model"]["merges"]:
    a, b = m if isinstance(m, list) else m.split(" ", 1)
    if a in vocab and b in vocab and (a + b) not in vocab:
        if not add(a + b):
            break
        merges.append([a, b])

added = []
for i, piece in sorted(special.items()):
    added.append({"id": i, "content": piece, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True})
out = {k: real[k] for k in ("version", "truncation", "padding", "normalizer", "pre_tokenizer", "post_processor",
                            "decoder")}
out["added_tokens"] = added
out["model"] = dict(real["model"], vocab=dict(sorted(vocab.items(), key=lambda kv: kv[1])), merges=merges)
json.dump(out, open(sys.argv[3], "w"), ensure_ascii=False, indent=1)
print("%d entries, %d merges, largest text id %d" % (len(vocab), len(merges), max(i for i in vocab.values() if i < limit)))
