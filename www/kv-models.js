// Published attention shapes of well-known decoders: the data of the memory calculator
// (kv-memory.js does the arithmetic, calculator.js the form).
//
// Every figure is read from the model's config.json on the Hugging Face hub (`source`; for
// Gemma 3 27B, the `text_config` inside it). `headDim` is config.json's `head_dim` where it has
// one, otherwise `hidden_size ÷ num_attention_heads` (GPT-2, Llama 3.1 8B/70B, SmolLM2, which
// have none). `context` is `max_position_embeddings` (`n_positions` for GPT-2). Sliding-window
// models give `window` (`sliding_window`) and `fullEvery`: layer i (from 0) attends to the whole
// sequence when (i + 1) is a multiple of it (`sliding_window_pattern`, or the `layer_types` list
// it spells out), and to the last `window` tokens otherwise.

const HUB = "https://huggingface.co";

export const KV_MODELS = [
  {
    id: "gpt2-124m",
    family: "GPT-2",
    name: "GPT-2 124M",
    layers: 12, heads: 12, kvHeads: 12, headDim: 64, hidden: 768, context: 1024,
    source: `${HUB}/openai-community/gpt2/blob/main/config.json`,
    fields: "n_layer 12, n_head 12, n_embd 768, n_positions 1024",
  },
  {
    id: "gpt2-1.5b",
    family: "GPT-2",
    name: "GPT-2 1.5B (XL)",
    layers: 48, heads: 25, kvHeads: 25, headDim: 64, hidden: 1600, context: 1024,
    source: `${HUB}/openai-community/gpt2-xl/blob/main/config.json`,
    fields: "n_layer 48, n_head 25, n_embd 1600, n_positions 1024",
  },
  {
    id: "smollm2-135m",
    family: "SmolLM2",
    name: "SmolLM2 135M",
    layers: 30, heads: 9, kvHeads: 3, headDim: 64, hidden: 576, context: 8192,
    source: `${HUB}/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json`,
    fields: "num_hidden_layers 30, num_attention_heads 9, num_key_value_heads 3, hidden_size 576, max_position_embeddings 8192",
  },
  {
    id: "smollm2-1.7b",
    family: "SmolLM2",
    name: "SmolLM2 1.7B",
    layers: 24, heads: 32, kvHeads: 32, headDim: 64, hidden: 2048, context: 8192,
    source: `${HUB}/HuggingFaceTB/SmolLM2-1.7B-Instruct/blob/main/config.json`,
    fields: "num_hidden_layers 24, num_attention_heads 32, num_key_value_heads 32, hidden_size 2048, max_position_embeddings 8192",
  },
  {
    id: "llama3.2-1b",
    family: "Llama 3",
    name: "Llama 3.2 1B",
    layers: 16, heads: 32, kvHeads: 8, headDim: 64, hidden: 2048, context: 131072,
    source: `${HUB}/meta-llama/Llama-3.2-1B/blob/main/config.json`,
    fields: "num_hidden_layers 16, num_attention_heads 32, num_key_value_heads 8, head_dim 64, hidden_size 2048, max_position_embeddings 131072",
  },
  {
    id: "llama3.2-3b",
    family: "Llama 3",
    name: "Llama 3.2 3B",
    layers: 28, heads: 24, kvHeads: 8, headDim: 128, hidden: 3072, context: 131072,
    source: `${HUB}/meta-llama/Llama-3.2-3B/blob/main/config.json`,
    fields: "num_hidden_layers 28, num_attention_heads 24, num_key_value_heads 8, head_dim 128, hidden_size 3072, max_position_embeddings 131072",
  },
  {
    id: "llama3.1-8b",
    family: "Llama 3",
    name: "Llama 3.1 8B",
    layers: 32, heads: 32, kvHeads: 8, headDim: 128, hidden: 4096, context: 131072,
    source: `${HUB}/meta-llama/Llama-3.1-8B/blob/main/config.json`,
    fields: "num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8, hidden_size 4096, max_position_embeddings 131072",
  },
  {
    id: "llama3.1-70b",
    family: "Llama 3",
    name: "Llama 3.1 70B",
    layers: 80, heads: 64, kvHeads: 8, headDim: 128, hidden: 8192, context: 131072,
    source: `${HUB}/meta-llama/Llama-3.1-70B/blob/main/config.json`,
    fields: "num_hidden_layers 80, num_attention_heads 64, num_key_value_heads 8, hidden_size 8192, max_position_embeddings 131072",
  },
  {
    id: "qwen3-0.6b",
    family: "Qwen3",
    name: "Qwen3 0.6B",
    layers: 28, heads: 16, kvHeads: 8, headDim: 128, hidden: 1024, context: 40960,
    source: `${HUB}/Qwen/Qwen3-0.6B/blob/main/config.json`,
    fields: "num_hidden_layers 28, num_attention_heads 16, num_key_value_heads 8, head_dim 128, hidden_size 1024, max_position_embeddings 40960",
  },
  {
    id: "qwen3-8b",
    family: "Qwen3",
    name: "Qwen3 8B",
    layers: 36, heads: 32, kvHeads: 8, headDim: 128, hidden: 4096, context: 40960,
    source: `${HUB}/Qwen/Qwen3-8B/blob/main/config.json`,
    fields: "num_hidden_layers 36, num_attention_heads 32, num_key_value_heads 8, head_dim 128, hidden_size 4096, max_position_embeddings 40960",
  },
  {
    id: "qwen3-32b",
    family: "Qwen3",
    name: "Qwen3 32B",
    layers: 64, heads: 64, kvHeads: 8, headDim: 128, hidden: 5120, context: 40960,
    source: `${HUB}/Qwen/Qwen3-32B/blob/main/config.json`,
    fields: "num_hidden_layers 64, num_attention_heads 64, num_key_value_heads 8, head_dim 128, hidden_size 5120, max_position_embeddings 40960",
  },
  {
    id: "gemma3-270m",
    family: "Gemma 3",
    name: "Gemma 3 270M",
    layers: 18, heads: 4, kvHeads: 1, headDim: 256, hidden: 640, context: 32768,
    window: 512, fullEvery: 6,
    source: `${HUB}/google/gemma-3-270m/blob/main/config.json`,
    fields: "num_hidden_layers 18, num_attention_heads 4, num_key_value_heads 1, head_dim 256, hidden_size 640, max_position_embeddings 32768, sliding_window 512, layer_types: full_attention every 6th layer",
  },
  {
    id: "gemma3-27b",
    family: "Gemma 3",
    name: "Gemma 3 27B",
    layers: 62, heads: 32, kvHeads: 16, headDim: 128, hidden: 5376, context: 131072,
    window: 1024, fullEvery: 6,
    source: `${HUB}/google/gemma-3-27b-it/blob/main/config.json`,
    fields: "text_config: num_hidden_layers 62, num_attention_heads 32, num_key_value_heads 16, head_dim 128, hidden_size 5376, max_position_embeddings 131072, sliding_window 1024, sliding_window_pattern 6",
  },
];
