import Foundation

/// Classification metrics over string labels.
public enum Classification {
    public struct Result: Equatable, Sendable, Codable {
        public var accuracy: Double
        /// Unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN); the classes are every label
        /// seen in the references or the predictions, a class with TP + FP + FN = 0 cannot occur.
        public var macroF1: Double
        public var perClassF1: [String: Double]
    }

    public static func evaluate(predictions: [String], references: [String]) throws -> Result {
        guard predictions.count == references.count else {
            throw EvalError.invalidInput("classification: \(predictions.count) predictions but \(references.count) references")
        }
        guard !predictions.isEmpty else { throw EvalError.invalidInput("classification: no items") }
        var tp: [String: Int] = [:], fp: [String: Int] = [:], fn: [String: Int] = [:]
        var correct = 0
        for (p, r) in zip(predictions, references) {
            if p == r { correct += 1; tp[p, default: 0] += 1 } else { fp[p, default: 0] += 1; fn[r, default: 0] += 1 }
        }
        let classes = Set(predictions).union(references)
        var perClass: [String: Double] = [:]
        for c in classes {
            let t = Double(tp[c] ?? 0), denominator = 2 * t + Double(fp[c] ?? 0) + Double(fn[c] ?? 0)
            perClass[c] = denominator > 0 ? 2 * t / denominator : 0
        }
        return Result(accuracy: Double(correct) / Double(predictions.count),
                      macroF1: perClass.values.reduce(0, +) / Double(classes.count), perClassF1: perClass)
    }
}

/// Perplexity from per-token negative log-likelihoods (natural log): exp(mean NLL).
public enum Perplexity {
    public static func from(negativeLogLikelihoods nll: [Double]) throws -> Double {
        guard !nll.isEmpty else { throw EvalError.invalidInput("perplexity: no tokens") }
        return exp(nll.reduce(0, +) / Double(nll.count))
    }
}
