"""Reference BLEU (sacrebleu 2.4.3, corpus_bleu defaults) and ROUGE-1/2/L (rouge-score 0.1.2,
default tokenizer, no stemming) for Tests/DistillEvalTests/Fixtures/text_metrics.json.

    pip install sacrebleu==2.4.3 rouge-score==0.1.2
    python3 scripts/make_text_metric_fixture.py
"""
import json
import os

import sacrebleu
from rouge_score import rouge_scorer

# (hypothesis, [references]) — punctuation, numbers with separators, hyphens after digits, HTML
# entities, non-ASCII text, several references, brevity, no 4-gram match, nothing in common,
# empty hypothesis, trailing whitespace.
PAIRS = [
    ("The cat sat on the mat.", ["The cat is sitting on the mat.", "A cat sat on the mat!"]),
    ("It costs $1,000.50 (about 3-4 days' pay).", ["It costs $1,000.50, about 3-4 days of pay."]),
    ("He said &quot;yes&quot; &amp; left.", ["He said \"yes\" & then he left."]),
    ("Ünïcödé café — naïve résumé, 東京 2024.", ["Unicode café: naive résumé in 東京, 2024."]),
    ("short", ["this reference is much longer than the hypothesis"]),
    ("completely different words here", ["nothing in common at all"]),
    ("", ["an empty hypothesis"]),
    ("the the the the the the", ["the cat"]),
    ("A well-known e-mail address: a.b@c.org, v2.0.", ["a well known email address a.b@c.org v2.0"]),
    ("Numbers: 1.5, 2,5 and 3.-4 end.\n", ["Numbers: 1.5 , 2,5 and 3. -4 end."]),
    ("Mr. Smith's dog-walker (aged 42) arrived at 5:30pm.", ["Mr Smith's dog walker, aged 42, arrived at 5:30 pm.", "The dog-walker arrived."]),
    ("Tabs\tand\u00a0non-breaking spaces  ", ["tabs and non-breaking spaces"]),
]


def main():
    hyps = [h for h, _ in PAIRS]
    max_refs = max(len(r) for _, r in PAIRS)
    # sacrebleu takes reference streams; a missing reference is None.
    streams = [[r[i] if i < len(r) else None for _, r in PAIRS] for i in range(max_refs)]
    corpus = sacrebleu.corpus_bleu(hyps, streams)
    tok = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    items = []
    for h, refs in PAIRS:
        single = sacrebleu.corpus_bleu([h], [[r] for r in refs])
        rouge = scorer.score_multi(refs, h)
        items.append({
            "hypothesis": h, "references": refs,
            "tokens_13a": tok(h.rstrip()).split(),
            "bleu": single.score, "bleu_precisions": single.precisions, "bleu_bp": single.bp,
            "rouge": {k: {"precision": v.precision, "recall": v.recall, "f": v.fmeasure} for k, v in rouge.items()},
        })
    out = {
        "sacrebleu": sacrebleu.__version__,
        "corpus_bleu": corpus.score, "corpus_precisions": corpus.precisions, "corpus_bp": corpus.bp,
        "corpus_sys_len": corpus.sys_len, "corpus_ref_len": corpus.ref_len,
        "items": items,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "DistillEvalTests", "Fixtures", "text_metrics.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print(f"wrote {path}: corpus BLEU {corpus.score:.6f}")


if __name__ == "__main__":
    main()
