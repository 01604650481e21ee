import DistillNN
import DistillTensor

/// One sample being generated: the item it continues, its sampler, what it has produced so far and
/// where it stands in the model's input.
struct GenerationRow {
    let item: Int
    let options: GenerationOptions
    var sampler: TokenSampler
    var result: GeneratedSequence
    /// The prompt and the tokens generated so far (the sampler's repetition history).
    var history: [Int]
    var stops: StopStringMatcher?
    /// Position of the next token fed to the model, and the left padding of its cache row.
    var position: Int
    var pad: Int
}

/// The rows of one generation batch and the KV cache they share. Live row k is cache row k and
/// row k of `logits`; finishing rows drops them from all three at once, so nothing else keeps
/// per-row state in step.
final class DecodingBatch {
    let model: TransformerLM
    let cache: KVCache
    private(set) var rows: [GenerationRow]
    /// Indices into `rows` of the rows still generating, in cache-row order.
    private var live: [Int]
    /// Next-token logits of the live rows, (live, V).
    private var logits: Tensor

    /// Runs the prompts (left-padded to a common length) through the model; item i's `n` samples
    /// share its cache row. Rows asking for no tokens are finished at once.
    init(model: TransformerLM, items: [GenerationItem], tokenizer: Tokenizer?) {
        self.model = model
        let v = model.config.vocabSize
        let longest = items.map(\.prompt.count).max()!
        let pads = items.map { longest - $0.prompt.count }
        let ids = items.flatMap { [Int](repeating: 0, count: longest - $0.prompt.count) + $0.prompt }
        let positions = pads.map { pad in (0..<longest).map { Swift.max(0, $0 - pad) } }
        let cache = model.makeCache()
        self.cache = cache
        // Only the last position's logits are needed: the output head runs on those rows alone
        // (for SmolLM2 the head is a fifth of a prompt's arithmetic).
        logits = withoutGradients {
            let h = model.forward(ids, batch: items.count, length: longest, positions: positions,
                                  mask: leftPaddingMask(pads, keys: longest), cache: cache, computeLogits: false).finalHidden
            return model.logits(finalHidden: h.slice(axis: 1, start: longest - 1, length: 1)).reshaped([items.count, v])
        }
        var rows: [GenerationRow] = []
        for (i, item) in items.enumerated() {
            let o = item.options
            for s in 0..<o.n {
                rows.append(GenerationRow(
                    item: i, options: o, sampler: TokenSampler(o.sampling, stream: item.samplerStream &+ UInt64(s)),
                    result: GeneratedSequence(prompt: i, sample: s, tokens: [], logprobs: [], topLogprobs: [], finishReason: .length),
                    history: item.prompt,
                    stops: o.stopStrings.isEmpty ? nil : tokenizer.map { StopStringMatcher(stops: o.stopStrings, tokenizer: $0) },
                    position: item.prompt.count, pad: pads[i]))
            }
        }
        self.rows = rows
        live = rows.indices.filter { rows[$0].options.maxTokens > 0 }
        let cacheRows = live.map { rows[$0].item }
        if !cacheRows.isEmpty && cacheRows != Array(items.indices) {
            cache.select(rows: cacheRows)
            let all = logits
            logits = withoutGradients { all.indexSelect(cacheRows, axis: 0) }
        }
    }

    var isDone: Bool { live.isEmpty }

    /// Picks each live row's next token, records and streams it (`onToken(row, token)`; a stop
    /// token ends its row unstreamed, as does cancellation before the token), drops the rows that
    /// finished, and runs the rest one position further.
    func step(onToken: (Int, GeneratedToken) -> Void, isCancelled: (Int) -> Bool) {
        let v = model.config.vocabSize
        var keep: [Int] = [], fed: [Int] = []
        let logp = withoutGradients { logits.logSoftmax() }
        for (k, r) in live.enumerated() {
            if isCancelled(r) { continue }
            let o = rows[r].options
            let token = rows[r].sampler.next(logits: logits.storage.pointer + k * v, count: v, history: rows[r].history)
            if o.stopTokenIds.contains(token) {
                rows[r].result.finishReason = .stop
                continue
            }
            let lp = logp.storage.pointer + k * v
            let top = o.topLogprobs > 0 ? topK(lp, count: v, k: o.topLogprobs) : []
            rows[r].result.tokens.append(token)
            rows[r].result.logprobs.append(lp[token])
            if o.topLogprobs > 0 { rows[r].result.topLogprobs.append(top) }
            rows[r].history.append(token)
            onToken(r, GeneratedToken(token: token, logprob: lp[token], topLogprobs: top))
            if rows[r].stops?.add(token) == true {
                rows[r].result.finishReason = .stopString
                continue
            }
            if rows[r].result.tokens.count >= o.maxTokens { continue }
            keep.append(k)
            fed.append(token)
        }
        if keep.count < live.count {
            live = keep.map { live[$0] }
            if live.isEmpty { return }
            cache.select(rows: keep)
        }
        let positions = live.map { [rows[$0].position] }
        for r in live { rows[r].position += 1 }
        let keys = cache.length + 1
        logits = withoutGradients {
            model.forward(fed, batch: live.count, length: 1, positions: positions,
                          mask: leftPaddingMask(live.map { rows[$0].pad }, keys: keys), cache: cache)
                .logits.reshaped([live.count, v])
        }
    }
}
