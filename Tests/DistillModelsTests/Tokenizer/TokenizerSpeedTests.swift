import Foundation
import XCTest
@testable import DistillModels

/// Prints encoding throughput; asserts nothing about speed (see DESIGN.md: speed is measured, not
/// tested). Run in a release build.
final class TokenizerSpeedTests: XCTestCase {
    /// About 2 MB of English-like prose from a seeded generator: sentences of common words with
    /// capitals, commas, contractions, numbers, quotes and paragraph breaks.
    static func englishText(bytes: Int, seed: UInt64) -> String {
        let words = """
            the of and to a in is it you that he was for on are with as I his they be at one have this from or had by \
            hot word but what some we can out other were all there when up use your how said an each she which do their \
            time if will way about many then them write would like so these her long make thing see him two has look more \
            day could go come did number sound no most people my over know water than call first who may down side been \
            now find any new work part take get place made live where after back little only round man year came show \
            every good me give our under name very through just form sentence great think say help low line differ turn \
            cause much mean before move right boy old too same tell does set three want air well also play small end put \
            home read hand port large spell add even land here must big high such follow act why ask men change went light \
            kind off need house picture try us again animal point mother world near build self earth father head stand own \
            page should country found answer school grow study still learn plant cover food sun four between state keep eye \
            never last let thought city tree cross farm hard start might story saw far sea draw left late run don't while \
            press close night real life few north open seem together next white children begin got walk example ease paper \
            group always music those both mark often letter until mile river car feet care second book carry took science \
            eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood main enough \
            plain girl usual young ready above ever red list though feel talk bird soon body dog family direct pose leave \
            song measure door product black short numeral class wind question happen complete ship area half rock order fire \
            south problem piece told knew pass since top whole king space heard best hour better true during hundred five \
            remember step early hold west ground interest reach fast verb sing listen six table travel less morning ten \
            simple several vowel toward war lay against pattern slow center love person money serve appear road map rain \
            rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan \
            figure star box noun field rest correct able pound done beauty drive stood contain front teach week final gave \
            green oh quick develop ocean warm free minute strong special mind behind clear tail produce fact street inch \
            multiply nothing course stay wheel full force blue object decide surface deep moon island foot system busy test \
            record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape equate miss \
            brought heat snow tire bring yes distant fill east paint language among distillation teacher student model \
            it's I'm we'll they've she'd isn't couldn't
            """.split(separator: " ").map(String.init)
        var rng = TestRNG(seed: seed)
        var out = ""
        out.reserveCapacity(bytes + 200)
        while out.utf8.count < bytes {
            let sentences = 2 + Int(rng.next() % 6)
            for s in 0..<sentences {
                let n = 5 + Int(rng.next() % 16)
                for i in 0..<n {
                    var w = words[Int(rng.next() % UInt64(words.count))]
                    if i == 0 { w = w.prefix(1).uppercased() + w.dropFirst() }
                    let r = rng.next() % 100
                    if r < 3 { w = String(rng.next() % 10_000) }
                    else if r < 5 { w = "\"" + w + "\"" }
                    out += w
                    if i < n - 1 { out += rng.next() % 10 == 0 ? ", " : " " }
                }
                out += ["." , ".", ".", "?", "!"][Int(rng.next() % 5)]
                if s < sentences - 1 { out += " " }
            }
            out += "\n\n"
        }
        return out
    }

    func measure(_ name: String, _ t: Tokenizer, _ text: String) -> (ids: Int, mbPerSecond: Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        let ids = t.encode(text, addSpecialTokens: false)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let mb = Double(text.utf8.count) / 1e6
        print(String(format: "tokenizer speed: %@: %.2f MB in %.3f s = %.2f MB/s (%d ids, %.2f bytes/id)",
                     name, mb, seconds, mb / seconds, ids.count, Double(text.utf8.count) / Double(ids.count)))
        return (ids.count, mb / seconds)
    }

    func testEncodingSpeed() throws {
        let text = TokenizerSpeedTests.englishText(bytes: 2_000_000, seed: 11)
        let smol = try tokLoad("smollm2")
        _ = smol.encode("warm up the Unicode tables: é 日本 1")
        _ = measure("SmolLM2, first pass (cache filling)", smol, text)
        _ = measure("SmolLM2, second pass", smol, text)
        let other = TokenizerSpeedTests.englishText(bytes: 2_000_000, seed: 12)
        _ = measure("SmolLM2, new text", smol, other)
        let uncached = try tokLoad("smollm2")
        uncached.usesPieceCache = false
        _ = measure("SmolLM2, no piece cache (every piece merged)", uncached, other)
        let q = try tokLoad("qwen2_style")
        _ = measure("Qwen2-style 500-token vocabulary (NFC, long pieces)", q, text)
        let cjk = String(repeating: "日本語のテキストと中文的文本。한국어 텍스트입니다. Русский текст, ελληνικά! ", count: 10_000)
        _ = measure("SmolLM2, mixed scripts", smol, cjk)
    }
}
