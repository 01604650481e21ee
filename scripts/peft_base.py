"""The tiny random Qwen2 (grouped-query attention) that the PEFT adapter fixtures are made on,
shared by make_peft_adapter_fixture.py and make_peft_prefix_fixture.py."""
import os

import torch
import transformers


def save_tiny_qwen2(out, seed):
    """Seeds torch, builds the model, saves it under out/base (safetensors) and returns it in eval mode."""
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=False, initializer_range=0.2, attn_implementation="eager")
    model = transformers.Qwen2ForCausalLM(config).float().eval()
    model.save_pretrained(os.path.join(out, "base"), safe_serialization=True)
    return model
