"""GPT-2's byte-level alphabet, shared by the fixture scripts: each byte 0..255 as the printable
character byte-level BPE tokenizers (GPT-2, Qwen2, Llama 3, SmolLM2) write it as."""


def byte_to_unicode():
    """{byte: character}: printable Latin-1 bytes stand for themselves, the rest map to 256 + n."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
