import DistillData
import DistillModels
import DistillTensor
import Foundation

extension Evaluator {
    /// Teacher agreement of one student:
    /// - over the continuation positions of up to `agreementItems` held-out sequences (the prompt
    ///   followed by the teacher's own answer for reasoning/generation, by the label for
    ///   classification; every position of the text for language modelling): the share of
    ///   positions where both models' most likely next token is the same, and the mean
    ///   KL(teacher ‖ student) = Σ_v p_t(v)·(log p_t(v) − log p_s(v));
    /// - on the task: the share of items where the student's answer equals the teacher's (final
    ///   answers by the verifiers' number rules, labels and generated texts exactly).
    static func agreement(teacher: PretrainedModel, student: PretrainedModel, task: EvalTask, teacherOutputs: TaskOutputs,
                          studentOutputs: TaskOutputs, options o: EvalOptions) throws -> TeacherAgreement {
        let vt = teacher.lm.config.vocabSize, vs = student.lm.config.vocabSize
        guard vt == vs else {
            throw EvalError.invalidInput("teacher and student vocabularies differ (\(vt) vs \(vs)): token agreement needs a shared tokenizer")
        }
        let tok = try teacher.requireTokenizer()
        // (ids, first position whose next-token prediction counts)
        var sequences: [(ids: [Int], from: Int)] = []
        switch task {
        case .reasoning, .generation:
            for (prompt, answer) in zip(task.prompts!, teacherOutputs.completions).prefix(o.agreementItems) {
                let c = try contextIds(teacher, prompt)
                sequences.append((c + tok.encode(answer, addSpecialTokens: false), c.count - 1))
            }
        case .classification(let items):
            for item in items.prefix(o.agreementItems) {
                let c = try contextIds(teacher, item.prompt)
                sequences.append((c + tok.encode(continuationText(teacher, prompt: item.prompt, item.label), addSpecialTokens: false), c.count - 1))
            }
        case .languageModeling(let text, _):
            let ids = tok.encode(text)
            for start in stride(from: 0, to: max(0, ids.count - 1), by: max(2, o.perplexityWindow)).prefix(o.agreementItems) {
                sequences.append((Array(ids[start..<min(ids.count, start + max(2, o.perplexityWindow))]), 0))
            }
        }
        var same = 0, positions = 0, kl = 0.0
        for (ids, from) in sequences where ids.count >= 2 && from < ids.count - 1 {
            let pt = try logProbabilities(teacher, ids), ps = try logProbabilities(student, ids)
            for i in max(0, from)..<(ids.count - 1) {
                let row = i * vt
                var at = 0, bt = -Float.infinity, ast = 0, bs = -Float.infinity
                var d = 0.0
                for v in 0..<vt {
                    let lt = pt[row + v], ls = ps[row + v]
                    if lt > bt { bt = lt; at = v }
                    if ls > bs { bs = ls; ast = v }
                    if lt > -Float.infinity { d += Double(exp(lt)) * Double(lt - ls) }
                }
                same += at == ast ? 1 : 0
                kl += d
                positions += 1
            }
        }
        var answerAgreement: Double?
        let pairs = zip(teacherOutputs.answers, studentOutputs.answers)
        if !teacherOutputs.answers.isEmpty {
            let equal: Int
            if case .reasoning = task {
                let math = MathEquivalence()
                equal = pairs.filter { a, b in a.flatMap { a in b.map { math.equivalent(a, $0) } } ?? false }.count
            } else {
                equal = pairs.filter { $0 == $1 && $0 != nil }.count
            }
            answerAgreement = Double(equal) / Double(teacherOutputs.answers.count)
        }
        return TeacherAgreement(top1: positions > 0 ? Double(same) / Double(positions) : 0,
                                meanKl: positions > 0 ? kl / Double(positions) : 0, positions: positions, answerAgreement: answerAgreement)
    }
}
