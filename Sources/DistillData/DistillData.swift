// DistillData: prompt sets, trace templates, verifiers and filters, the OpenAI-compatible
// teacher client, the generation store and dataset files. See docs/ARCHITECTURE.md.
import DistillModels
