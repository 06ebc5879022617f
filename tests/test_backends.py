import subprocess
import sys
import textwrap

import pytest

from selfinstruct.backends import Sampling, chat_prompt, load_generator
from selfinstruct.backends.hf import HFGenerator, _cut_at_stop
from selfinstruct.backends.vllm import lora_rank_slot
from selfinstruct.config import UserError

from .conftest import REPO


def test_lora_rank_is_rounded_up_to_a_rank_vllm_serves():
    assert [lora_rank_slot(r) for r in (1, 4, 8, 12, 16, 300)] == [1, 8, 8, 16, 16, 320]
    with pytest.raises(UserError, match="up to 512"):
        lora_rank_slot(1024)


def test_chat_prompt_uses_the_model_template_and_prefill(tiny_model):
    from selfinstruct.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    prompt = chat_prompt(tokenizer, [{"role": "user", "content": "Ask something."}], prefill="Who")
    assert prompt.endswith("<|im_start|>assistant\nWho")
    assert "Ask something." in prompt


def test_stop_strings_are_cut_like_vllm_does():
    assert _cut_at_stop("Who built it?\nAnswer: x", ("\n",)) == "Who built it?"
    assert _cut_at_stop("no stop here", ("\n", "##")) == "no stop here"


def test_transformers_engine_batches_mixed_sampling_in_order(tiny_model):
    generator = HFGenerator(tiny_model, quantization="nf4", batch_size=2)
    prompts = [f"prompt number {i}" for i in range(5)]
    greedy = Sampling(max_new_tokens=4)
    sampled = [Sampling(max_new_tokens=4, temperature=0.9, seed=i) for i in range(2)]
    texts = generator.generate(prompts, [greedy, greedy, greedy] + sampled)
    assert len(texts) == 5 and all(isinstance(t, str) for t in texts)
    assert 0 < generator.generated_tokens <= 5 * 4
    # Greedy decoding of one prompt does not depend on the batch it rode in.
    alone = generator.generate([prompts[1]], greedy)
    assert alone[0] == texts[1]
    assert generator.record["quantization"] == "bitsandbytes-nf4+double-quant"


@pytest.mark.slow
def test_transformers_engine_writes_real_text_with_the_embedded_model(embedded_model):
    generator = load_generator(embedded_model, backend="transformers")
    prompt = chat_prompt(generator.tokenizer, [{"role": "user", "content": "What is the capital of France?"}],
                         prefill="The capital of France is")
    [text] = generator.generate([prompt], Sampling(max_new_tokens=16))
    assert generator.record["engine"] == "transformers"
    assert "paris" in text.lower()


VLLM_SCRIPT = textwrap.dedent("""
    import json, sys
    from selfinstruct.backends import Sampling, chat_prompt, load_generator
    from selfinstruct.models import resolve_model

    if __name__ == "__main__":
        generator = load_generator(resolve_model("default").path, backend="vllm")
        prompt = chat_prompt(generator.tokenizer, [{"role": "user", "content": "What is the capital of France?"}],
                             prefill="The capital of France is")
        texts = generator.generate([prompt] * 3, [Sampling(max_new_tokens=16),
                                                  Sampling(max_new_tokens=16, regex=r"[A-Z][a-z ]{3,40}[.]"),
                                                  Sampling(max_new_tokens=8, temperature=0.8, seed=1)])
        print(json.dumps({"texts": texts, "record": generator.record, "tokens": generator.generated_tokens}))
""")


@pytest.mark.slow
def test_vllm_engine_writes_real_text_with_the_embedded_model(tmp_path):
    pytest.importorskip("vllm")
    import json

    script = tmp_path / "run_vllm.py"
    script.write_text(VLLM_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    greedy, guided, sampled = out["texts"]
    assert out["record"]["engine"] == "vllm"
    assert "paris" in greedy.lower()
    assert guided[0].isupper() and guided.endswith("."), guided  # the regex held
    assert out["tokens"] > 0
