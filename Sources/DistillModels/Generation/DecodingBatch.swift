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

/// The rows of one generation batch and the KV cache they share. Rows are named by ids handed out
/// as they are admitted (0, 1, … in admission order). Live row k is cache row k and row k of
/// `logits`; finishing rows drops them from all three at once, so nothing else keeps per-row state
/// in step.
///
/// Rows may join between steps (`admit`): continuous batching. The newcomers' prompts run through
/// the model on their own, then their cache rows join the running ones, the shorter side
/// left-padded (masked) to the longer; when rows finish, cache positions that are padding for
/// every live row are dropped, so the cache stays as long as its longest live row.
final class DecodingBatch {
    let model: TransformerLM
    private let tokenizer: Tokenizer?
    private(set) var cache: KVCache
    private var rows: [Int: GenerationRow] = [:]
    private var nextID = 0
    /// Ids of the rows still generating, in cache-row order.
    private(set) var live: [Int] = []
    /// Next-token logits of the live rows, (live, V).
    private var logits: Tensor

    init(model: TransformerLM, tokenizer: Tokenizer?) {
        self.model = model
        self.tokenizer = tokenizer
        cache = model.makeCache()
        logits = Tensor(zeros: [0, model.config.vocabSize])
    }

    /// A batch of `items` (`admit`).
    convenience init(model: TransformerLM, items: [GenerationItem], tokenizer: Tokenizer?) {
        self.init(model: model, tokenizer: tokenizer)
        admit(items)
    }

    var isDone: Bool { live.isEmpty }

    /// Whether row `id` is still generating.
    func isLive(_ id: Int) -> Bool { live.contains(id) }

    /// The result of row `id`, removed from the batch (call once the row finished).
    func take(_ id: Int) -> GeneratedSequence {
        precondition(!live.contains(id), "DecodingBatch: row \(id) is still generating")
        return rows.removeValue(forKey: id)!.result
    }

    /// Runs the prompts of `items` (left-padded to a common length) through the model and adds their
    /// rows: item i's `n` samples share its cache row, and their results name it as prompt i. Rows
    /// asking for no tokens are finished at once. Returns the new rows' ids: item 0's samples, then
    /// item 1's, …
    @discardableResult
    func admit(_ items: [GenerationItem]) -> [Int] {
        guard !items.isEmpty else { return [] }
        let v = model.config.vocabSize
        let longest = items.map(\.prompt.count).max()!
        let pads = items.map { longest - $0.prompt.count }
        let ids = items.flatMap { [Int](repeating: 0, count: longest - $0.prompt.count) + $0.prompt }
        let positions = pads.map { pad in (0..<longest).map { Swift.max(0, $0 - pad) } }
        let newCache = model.makeCache()
        // Only the last position's logits are needed: the output head runs on those rows alone
        // (for SmolLM2 the head is a fifth of a prompt's arithmetic).
        var newLogits = withoutGradients {
            let h = model.forward(ids, batch: items.count, length: longest, positions: positions,
                                  mask: leftPaddingMask(pads, keys: longest), cache: newCache, computeLogits: false).finalHidden
            return model.logits(finalHidden: h.slice(axis: 1, start: longest - 1, length: 1)).reshaped([items.count, v])
        }
        var added: [Int] = [], joining: [Int] = [], cacheRows: [Int] = []
        for (i, item) in items.enumerated() {
            let o = item.options
            for s in 0..<o.n {
                let id = nextID
                nextID += 1
                added.append(id)
                rows[id] = GenerationRow(
                    item: i, options: o, sampler: TokenSampler(o.sampling, stream: item.samplerStream &+ UInt64(s)),
                    result: GeneratedSequence(prompt: i, sample: s, tokens: [], logprobs: [], topLogprobs: [], finishReason: .length),
                    history: item.prompt,
                    stops: o.stopStrings.isEmpty ? nil : tokenizer.map { StopStringMatcher(stops: o.stopStrings, tokenizer: $0) },
                    position: item.prompt.count, pad: pads[i])
                if o.maxTokens > 0 {
                    joining.append(id)
                    cacheRows.append(i)
                }
            }
        }
        guard !joining.isEmpty else { return added }
        if cacheRows != Array(items.indices) {
            newCache.select(rows: cacheRows)
            let all = newLogits
            newLogits = withoutGradients { all.indexSelect(cacheRows, axis: 0) }
        }
        if live.isEmpty {
            cache = newCache
            logits = newLogits
        } else {
            // The shorter side's rows gain left padding up to the longer length.
            let grow = Swift.max(0, newCache.length - cache.length), shift = Swift.max(0, cache.length - newCache.length)
            for id in live { rows[id]!.pad += grow }
            for id in joining { rows[id]!.pad += shift }
            cache.appendRows(of: newCache)
            let old = logits
            logits = withoutGradients { concat([old, newLogits], axis: 0) }
        }
        live += joining
        return added
    }

    /// Picks each live row's next token, records and streams it (`onToken(id, token)`; a stop
    /// token ends its row unstreamed, as does cancellation before the token), drops the rows that
    /// finished, and runs the rest one position further.
    func step(onToken: (Int, GeneratedToken) -> Void, isCancelled: (Int) -> Bool) {
        let v = model.config.vocabSize
        var keep: [Int] = [], fed: [Int] = []
        let logp = withoutGradients { logits.logSoftmax() }
        for (k, r) in live.enumerated() {
            if isCancelled(r) { continue }
            let o = rows[r]!.options
            let token = rows[r]!.sampler.next(logits: logits.storage.pointer + k * v, count: v, history: rows[r]!.history)
            if o.stopTokenIds.contains(token) {
                rows[r]!.result.finishReason = .stop
                continue
            }
            let lp = logp.storage.pointer + k * v
            let top = o.topLogprobs > 0 ? topK(lp, count: v, k: o.topLogprobs) : []
            rows[r]!.result.tokens.append(token)
            rows[r]!.result.logprobs.append(lp[token])
            if o.topLogprobs > 0 { rows[r]!.result.topLogprobs.append(top) }
            rows[r]!.history.append(token)
            onToken(r, GeneratedToken(token: token, logprob: lp[token], topLogprobs: top))
            if rows[r]!.stops?.add(token) == true {
                rows[r]!.result.finishReason = .stopString
                continue
            }
            if rows[r]!.result.tokens.count >= o.maxTokens { continue }
            keep.append(k)
            fed.append(token)
        }
        if keep.count < live.count {
            live = keep.map { live[$0] }
            if live.isEmpty { return }
            cache.select(rows: keep)
            // Positions that are padding for every live row hold nothing anyone attends to.
            let unused = live.map { rows[$0]!.pad }.min()!
            if unused > 0 {
                cache.dropLeading(unused)
                for id in live { rows[id]!.pad -= unused }
            }
        }
        let positions = live.map { [rows[$0]!.position] }
        for r in live { rows[r]!.position += 1 }
        let keys = cache.length + 1
        logits = withoutGradients {
            model.forward(fed, batch: live.count, length: 1, positions: positions,
                          mask: leftPaddingMask(live.map { rows[$0]!.pad }, keys: keys), cache: cache)
                .logits.reshaped([live.count, v])
        }
    }
}
