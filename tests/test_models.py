import pytest

from selfinstruct.config import UserError
from selfinstruct.models import keep_nf4_trainable, linear4bit_layers, load_model, resolve_model


def test_default_alias_resolves_to_the_converted_embedded_model(embedded_model):
    for spec in ("smollm2-135m-instruct", "default", "SmolLM2"):
        resolved = resolve_model(spec)
        assert resolved.origin == "embedded" and resolved.path == embedded_model
    assert (embedded_model / "model.safetensors").is_file()
    assert (embedded_model / "tokenizer.json").is_file()


def test_local_folder_is_used_as_is(tiny_model):
    resolved = resolve_model(str(tiny_model))
    assert resolved.origin == "local" and resolved.path == tiny_model


@pytest.mark.parametrize("spec, message", [
    ("no/such/path/here", "no such model"),
    ("./missing-model", "no such model"),
    ("definitely-not-a-model", "no such model"),
])
def test_missing_models_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        resolve_model(spec)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        resolve_model(str(tmp_path))


def test_hub_id_without_network_is_one_clear_error():
    with pytest.raises(UserError, match="hub could not provide it") as info:
        resolve_model("meta-llama/Llama-2-7b-chat-hf")
    assert "\n" not in str(info.value)


def test_gguf_file_is_converted(tmp_path, monkeypatch, embedded_model):
    from selfinstruct.models import _embedded_gguf

    monkeypatch.setenv("SELFINSTRUCT_HOME", str(tmp_path))
    resolved = resolve_model(str(_embedded_gguf("smollm2-135m-instruct")))
    assert resolved.origin == "gguf" and resolved.path.is_relative_to(tmp_path)
    assert (resolved.path / "config.json").is_file()


def test_nf4_loading_yields_linear4bit_with_double_quant(tiny_model):
    model, record = load_model(tiny_model, "nf4")
    layers = linear4bit_layers(model)
    # 2 layers x (q, k, v, o, gate, up, down); lm_head stays in full precision, as in QLoRA.
    assert len(layers) == 14
    for layer in layers:
        assert layer.weight.quant_state.quant_type == "nf4"
        assert layer.weight.quant_state.nested, "double quantization must be on"
    assert record["quantization"] == "bitsandbytes-nf4+double-quant"
    assert record["linear4bit_layers"] == 14
    assert record["compute_dtype"] in ("bfloat16", "float32", "float16")


def test_unquantized_loading_on_request(tiny_model):
    model, record = load_model(tiny_model, "none")
    assert not linear4bit_layers(model) and record["quantization"] == "none"


def test_guard_undoes_the_cpu_repacking_of_nf4_weights(tiny_model):
    import torch

    model, _ = load_model(tiny_model, "nf4")
    layers = linear4bit_layers(model)
    shapes = [tuple(layer.weight.shape) for layer in layers]
    model.eval()
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))
    # The guard must leave the weights in the layout training needs, whether or not this CPU repacked them.
    assert keep_nf4_trainable(model) == len(layers)
    assert [tuple(layer.weight.shape) for layer in layers] == shapes
    assert not any(getattr(layer.weight.quant_state, "packing_format_for_cpu", False) for layer in layers)
    assert not any(layer.support_avx512bf16_for_cpu for layer in layers)


def test_guard_restores_weights_that_were_repacked(tiny_model):
    """Forces the repack bitsandbytes does on AVX-512 bf16 CPUs (on any CPU: it is a pure torch reshuffle), so
    the guard is checked here too: afterwards the layer holds the layout and the values it trained with."""
    import torch
    from bitsandbytes.functional import _convert_weight_packed_for_cpu, dequantize_4bit

    model, _ = load_model(tiny_model, "nf4")
    layer = linear4bit_layers(model)[0]
    before = dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()  # bf16 where the CPU has it
    layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu(layer.weight.data,
                                                                               layer.weight.quant_state)
    assert layer.weight.quant_state.packing_format_for_cpu
    assert not torch.allclose(dequantize_4bit(layer.weight.data, layer.weight.quant_state).float(), before, atol=1e-3)
    keep_nf4_trainable(model)
    assert not getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
    # Equal up to the absmax, which the repack keeps in float instead of double-quantized.
    assert torch.allclose(dequantize_4bit(layer.weight.data, layer.weight.quant_state).float(), before, atol=1e-3)

