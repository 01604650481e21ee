import DistillTensor

/// A built-in reasoning task with verifiable answers: short multi-step arithmetic word problems
/// ("Ann has 23 pens. She buys 15 more and gives 9 away. How many pens does she have now?"),
/// generated from a seed, each with a step-by-step solution in the trace template
/// (`<think>\n23+15=38\n38-9=29\n</think>\n\n#### 29`) and its integer answer.
///
/// Answers stay between 0 and 199 and intermediate results are never negative, so a small model
/// trained on a few thousand of them can learn the task; the same seed gives the same problems.
public struct WordProblem: Codable, Equatable, Sendable {
    public var id: String
    public var prompt: String
    /// The ground-truth reasoning + answer, in the default trace template.
    public var solution: String
    public var answer: Int
}

public enum WordProblems {
    static let names: [(String, String)] = [("Ann", "She"), ("Ben", "He"), ("Cara", "She"), ("Dan", "He"), ("Eva", "She"),
                                            ("Finn", "He"), ("Gia", "She"), ("Hugo", "He"), ("Ivy", "She"), ("Jack", "He"),
                                            ("Kim", "She"), ("Leo", "He"), ("Mia", "She"), ("Noah", "He"), ("Ola", "She"), ("Sam", "He")]
    static let items = ["pens", "apples", "cards", "books", "coins", "shells", "stamps", "marbles", "eggs", "cups",
                        "rocks", "kites", "toys", "plums", "nuts", "beads"]

    /// `count` problems from `seed` (problem i depends only on the seed and i).
    public static func generate(count: Int, seed: UInt64, idPrefix: String = "wp") -> [WordProblem] {
        (0..<count).map { i in
            var rng = RandomGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i) &* 0xBF58_476D_1CE4_E5B9 &+ 1)
            return problem(&rng, id: "\(idPrefix)-\(i)")
        }
    }

    static func pick<T>(_ a: [T], _ rng: inout RandomGenerator) -> T { a[Int(rng.next() % UInt64(a.count))] }
    static func number(_ lo: Int, _ hi: Int, _ rng: inout RandomGenerator) -> Int { lo + Int(rng.next() % UInt64(hi - lo + 1)) }

    static func problem(_ rng: inout RandomGenerator, id: String) -> WordProblem {
        let (a, pa) = pick(names, &rng)
        var (b, _) = pick(names, &rng)
        while b == a { b = pick(names, &rng).0 }
        let item = pick(items, &rng)
        let she = pa, her = pa == "She" ? "her" : "his", hasPronoun = pa == "She" ? "she" : "he"
        var steps: [String] = []
        func op(_ x: Int, _ sign: Character, _ y: Int) -> Int {
            let r = sign == "+" ? x + y : sign == "-" ? x - y : x * y
            steps.append("\(x)\(sign)\(y)=\(r)")
            return r
        }
        let prompt: String, answer: Int
        switch rng.next() % 5 {
        case 0:
            let x = number(10, 60, &rng), y = number(5, 40, &rng), z = number(2, x + y - 1, &rng)
            prompt = "\(a) has \(x) \(item). \(she) buys \(y) more and gives \(z) to \(b). How many \(item) does \(hasPronoun) have now?"
            answer = op(op(x, "+", y), "-", z)
        case 1:
            let x = number(20, 90, &rng), y = number(2, x - 1, &rng), z = number(3, 50, &rng)
            prompt = "\(a) had \(x) \(item). \(she) lost \(y), then found \(z). How many \(item) does \(hasPronoun) have?"
            answer = op(op(x, "-", y), "+", z)
        case 2:
            let x = number(5, 60, &rng), y = number(5, 60, &rng), z = number(5, 60, &rng)
            prompt = "A box has \(x) \(item). \(a) adds \(y) and \(b) adds \(z). How many \(item) are in the box?"
            answer = op(op(x, "+", y), "+", z)
        case 3:
            let x = number(5, 50, &rng), y = number(2, 40, &rng)
            prompt = "\(a) has \(x) \(item). \(b) has \(y) more than \(a). How many \(item) do they have together?"
            let bHas = op(x, "+", y)
            answer = op(x, "+", bHas)
        default:
            let k = number(2, 6, &rng), x = number(3, 15, &rng), z = number(1, k * x - 1, &rng)
            prompt = "\(a) buys \(k) bags with \(x) \(item) in each bag. \(she) gives \(z) to \(b). How many \(item) are left in \(her) bags?"
            answer = op(op(k, "*", x), "-", z)
        }
        let solution = "<think>\n" + steps.joined(separator: "\n") + "\n</think>\n\n#### \(answer)"
        return WordProblem(id: id, prompt: prompt, solution: solution, answer: answer)
    }
}
