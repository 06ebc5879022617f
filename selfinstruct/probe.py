"""`selfinstruct probe`: how much the tuned model still makes up, next to how much of the corpus it learned.

Absent-entity probes ask about people, places, organisations and things that are not in the corpus (checked
exactly and fuzzily against it, and kept apart from the names used for training refusals): any answer that is
not a refusal is a hallucination. Answerable probes ask training questions verbatim and in new phrasings the
generator model writes. The base model answers the same prompts with the same greedy decoding. Over 300 lines
because building, asking and judging the probes is one story; the report lives in report.py, the gate in gate.py."""

from __future__ import annotations

import random
import re
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import filters, prompts
from .backends import Sampling, chat_prompt
from .config import UserError
from .corpus import normalize, read_corpus, upper_first
from .entities import KINDS, corpus_entities, invent_names, swap_in_invented
from .generate import answers_with_key, other_names, read_back, written_question_fault
from .negatives import false_premises, swap_in_absent
from .review import reviewed_pairs
from .runs import AnswerCache, Manifest, answer_stamp, pick_run, read_json, read_jsonl

REFUSAL = re.compile(
    r"cannot answer|can(?:no|')t answer|unable to answer|not (?:in|part of) source:|i (?:do not|don't) know|"
    r"no (?:information|record|mention)|not (?:mentioned|recorded|known)|i(?:'m| am) not (?:sure|aware)|"
    r"there is no (?:information|record|mention)|i could(?:n't| not) find|not able to answer|no idea|"
    r"无法回答|不知道|没有(?:相关|这方面的)?(?:信息|内容|记载|记录)|没有提到|不清楚|无从得知|不能回答", re.IGNORECASE)
INVENTED_QUESTIONS = {
    "en": {"person": ("Who is {}?", "What is {} known for?"), "place": ("Where is {}?", "What is {} famous for?"),
           "org": ("What does {} do?", "Who founded {}?"), "thing": ("What is {}?", "Who built {}?")},
    "zh": {"person": ("{}是谁？", "{}以什么闻名？"), "place": ("{}在哪里？", "{}以什么闻名？"),
           "org": ("{}是做什么的？", "谁创立了{}？"), "thing": ("{}是什么？", "谁制造了{}？")},
}


@dataclass
class Probe:
    id: str
    kind: str  # absent | answerable | held_out | user
    origin: str  # swapped | invented | false_premise | verbatim | paraphrase | held_out | user
    question: str
    reference: str | None = None  # the answer the corpus gives
    key: str | None = None  # the name or number a right answer must hold
    answerable: bool = True
    entity: str | None = None
    absence: dict | None = None
    derived_from: str | None = None
    shape: str | None = None  # a held-out phrasing's origin in generate: model, clause, cloze, template ...
    results: dict = field(default_factory=dict)  # model -> {answer, verdict, f1, exact}


def is_refusal(answer: str) -> bool:
    return bool(REFUSAL.search(answer))


def judge(probe: Probe, answer: str) -> dict:
    """Each answer gets a `verdict` (the rule-based reading kept from the start) and an honest `outcome`:
    right, refused or wrong. A refusal of a question the model cannot answer right is honest even when the
    corpus holds the answer; wrong is an answer about an absent thing, or one whose first sentence misses the
    reference key (`filters.gives_key`).
    An empty answer is its own verdict and outcome: it neither invents nor refuses (an undertrained adapter
    that ends every reply at once gives only these), and it scores nothing on answerable probes."""
    if not answer.strip():
        return {"answer": answer, "verdict": "empty", "outcome": "empty"} | (
            {"f1": 0.0, "exact": False, "key_match": False} if probe.answerable else {})
    refused = is_refusal(answer)
    if not probe.answerable:
        return {"answer": answer, "verdict": "refused" if refused else "hallucinated",
                "outcome": "refused" if refused else "wrong"}
    if refused:
        return {"answer": answer, "verdict": "over_refusal", "outcome": "refused", "f1": 0.0, "exact": False,
                "key_match": False}
    f1 = filters.token_f1(answer, probe.reference) if probe.reference else None
    exact = filters.agrees(answer, probe.key) if probe.key else None
    key = probe.key or probe.reference  # a user's question may give only its answer
    matched = filters.gives_key(answer, key) if key else None
    return {"answer": answer, "verdict": "answered", "outcome": None if matched is None else
            "right" if matched else "wrong", "f1": f1, "exact": exact, "key_match": matched}


def absent_probes(pairs, corpus_text, language, entities, n, rng, avoid) -> list[Probe]:
    """Questions about what the corpus does not hold. Most look like the corpus (DESIGN.md: odd invented names
    are told apart by their oddness alone): real training questions with their entity swapped for a name
    recombined from the corpus's own name parts or a real-world one, and false premises (another corpus entity
    in the question's relation); the rest swap in or ask outright about syllable-invented names."""
    corpus_lower, used = corpus_text.lower(), set(avoid)
    answerable = [p for p in pairs if p["answerable"]]
    n_hard, n_false = round(0.5 * n), round(0.2 * n)
    probes = [_absent(i, origin, question, check, avoid, derived_from=pair["id"])
              for i, (pair, question, check, _, origin) in enumerate(swap_in_absent(
                  answerable, n_hard, rng, language, corpus_lower, entities, "probe", avoid=frozenset(used)))]
    for pair, question, other in false_premises(answerable, min(n_false, n - len(probes)), rng, corpus_text,
                                                entities):
        probes.append(Probe(f"absent-{len(probes)}", "absent", "false_premise", question, answerable=False,
                            entity=other, absence={"false_premise": True}, derived_from=pair["id"]))
    swapped = swap_in_invented(answerable, (n - len(probes)) // 2, rng, language, corpus_lower, entities, avoid=used)
    probes += [_absent(len(probes) + i, "swapped", question, name, avoid, derived_from=pair["id"])
               for i, (pair, question, name, _) in enumerate(swapped)]
    while len(probes) < n:
        kind = KINDS[len(probes) % len(KINDS)]
        names = invent_names(kind, 1, rng, language, corpus_lower, entities, avoid=used)
        if not names:
            break
        used.add(names[0].name)
        template = rng.choice(INVENTED_QUESTIONS[language][kind])
        question = template.format(names[0].name)
        probes.append(_absent(len(probes), "invented", upper_first(question), names[0], avoid))
    return probes


def _absent(i, origin, question, check, avoid, derived_from=None) -> Probe:
    absence = {"exact_absent": check.exact_absent, "closest_corpus_entity": check.closest,
               "similarity": check.similarity, "not_a_training_refusal_name": check.name not in avoid}
    return Probe(f"absent-{i}", "absent", origin, question, answerable=False, entity=check.name, absence=absence,
                 derived_from=derived_from)


def verbatim_probes(train_pairs, n, rng) -> list[Probe]:
    chosen = rng.sample(train_pairs, min(n, len(train_pairs)))
    return [Probe(f"verbatim-{i}", "answerable", "verbatim", p["question"], p["answer"], p.get("key"),
                  derived_from=p["id"]) for i, p in enumerate(chosen)]


def trained_questions(train_pairs) -> filters.NearDuplicates:
    """Every trained question, against which a new or held-out phrasing must be new: 3-gram Jaccard under 0.5."""
    trained = filters.NearDuplicates(0.5)
    for p in train_pairs:
        trained.add(p["question"])
    return trained


def held_out_probes(pairs, held_ids, train_pairs, n, rng) -> list[Probe]:
    """Phrasings tune held out (never trained) of facts it trained in other words, unlike every trained question
    (3-gram Jaccard under 0.5, the bar new phrasings pass): "Which organisation set aside a bed for the poor?"
    held out, "Complete: The Orders set aside ..." trained. Generate's filters (and, for the model's, its round
    trip) passed them, so each can be answered from its sentence, which probe's own new phrasings often cannot
    (README); and there are dozens, not a score. Eval loss picked tune's checkpoint on them, and the gate was
    calibrated on them, so the raw tuned model's key accuracy is the fair reading, the gated one is not.
    Most are the sentence's own words reshaped (cloze, template, reworded); the model-written ones (`shape`
    "model") are the ones in other words, and the report gives them a row of their own."""
    trained = trained_questions(train_pairs)
    facts = {p["fact_id"] for p in train_pairs if p.get("fact_id")}
    candidates = [p for p in pairs if p["id"] in held_ids and p["answerable"] and p.get("key")
                  and p.get("fact_id") in facts and not trained.find(p["question"])]
    chosen = rng.sample(candidates, min(n, len(candidates)))
    return [Probe(f"held-out-{i}", "held_out", "held_out", p["question"], p["answer"], p["key"],
                  derived_from=p["id"], shape=p.get("origin")) for i, p in enumerate(chosen)]


# Samples the writer draws from each started question of a fact. Few pass the filters, the round trip and
# `one_answer`: with one, runs of the eval corpus kept 15 to 20 of the 25 new phrasings asked for; with three, 25.
PHRASING_SAMPLES = 3

# A new phrasing asks who, where, when or how many. The small writer turns the "What" and "Which" stems of a
# thing or an organisation into questions that do not say what they ask for: "Which plant was added in 1731?"
# for "the Keeper", "What is the name of the island guild?" for "President".
PHRASED_KINDS = ("person", "place", "year", "quantity")


def paraphrase_probes(generator, train_pairs, corpus_text, language, entities, n, seed) -> list[Probe]:
    """New phrasings of trained facts about a person, a place, a year or a quantity, written by the generator
    model the way generate writes questions, kept only if they pass the same filters and round trip (which keep
    out one that holds its key, "... Hugo Merrivane's carabine?" too), name their fact (`anchors`), differ from
    every question the model was trained on, pass generate's `written_question_fault` (one fact asked for,
    `filters.asks_one_fact`, that has one answer, `one_answer`, and none beside it where its words point,
    `points_elsewhere`, about the clause that states it, `asks_another_clause`) and are no near-twin of another
    fact's probe (one question, two answers)."""
    from tqdm import tqdm

    trained = trained_questions(train_pairs)
    named = {p["id"]: anchors(p, corpus_text, entities) for p in train_pairs
             if p.get("key") and p.get("evidence") and p.get("kind") in PHRASED_KINDS}
    facts: dict[str, list[dict]] = {}
    for p in train_pairs:
        if named.get(p["id"]):
            facts.setdefault(p.get("fact_id", p["id"]), []).append(p)  # a hand-made qa.jsonl may lack fact ids
    # About one fact in four asked about gets a question past the filters, the round trip and `one_answer` (25 of
    # 99 on the eval corpus, three samples a stem; with one, 15 of 173): three for each probe still missing are
    # asked about, round after round, until n are kept or no fact is left.
    order = random.Random(seed).sample(sorted(facts), len(facts))
    probes, done, kept = [], set(), filters.NearDuplicates(0.5)
    with tqdm(total=n, unit="probe", desc="new phrasings", dynamic_ncols=True) as bar:
        while order and len(probes) < n:
            batch, order = order[:3 * (n - len(probes))], order[3 * (n - len(probes)):]
            for pair, question in _fair_paraphrases(generator, [facts[f][0] for f in batch], corpus_text, language,
                                                    entities, named, trained, seed):
                if len(probes) == n or pair["id"] in done or kept.find(question):
                    continue
                done.add(pair["id"])  # a fact's first pair stands for the fact
                kept.add(question)
                probes.append(Probe(f"paraphrase-{len(probes)}", "answerable", "paraphrase", question,
                                    pair["answer"], pair["key"], derived_from=pair["id"]))
                bar.update()
            bar.set_postfix(facts_asked=len(facts) - len(order))
    return probes


def _fair_paraphrases(generator, pairs, corpus_text, language, entities, named, trained,
                      seed) -> list[tuple[dict, str]]:
    """(pair, question) for each question written about the pairs that passes generate's filters, names its
    fact, asks for that fact alone and is no trained question, then passes the round trip generate puts its own
    written questions through: read beside its sentence, a fair question gets its key back. "When adding another
    twenty-four beds, what's that question?" does not."""
    written = [(pair, sentence, question) for pair, sentence, question
               in _write_paraphrases(generator, pairs, corpus_text, language, seed)
               if not filters.check_question(question, pair["key"], sentence, corpus_text[pair["start"]:pair["end"]])
               and any(filters.mentions(question, a) for a in named[pair["id"]]) and not trained.find(question)
               and not written_question_fault(question, sentence, pair["key"], pair["kind"], entities)]
    replies = read_back(generator, [s for _, s, _ in written], [q for *_, q in written], language, 48, seed)
    return [(pair, question) for (pair, _, question), reply in zip(written, replies, strict=True)
            if answers_with_key(reply, pair["key"], question, entities)]


def anchors(pair: dict, corpus_text: str, entities: dict[str, str]) -> list[str]:
    """The names and numbers in a fact's sentence besides its key. A new phrasing must keep one: "In what year
    did Tobias Varrance ...?" asks for one fact; the small model's "What is the name of the garden?" or "What
    number of times that three?" asks for none, and no reader could answer it either."""
    return other_names(corpus_text[pair["evidence"][0]:pair["evidence"][1]], pair["key"], entities)


def _write_paraphrases(generator, pairs, corpus_text, language, seed) -> list[tuple[dict, str, str | None]]:
    """(pair, its fact's sentence, the question written) for each of PHRASING_SAMPLES samples from each question
    stem of each fact's first pair."""
    jobs = []
    for pair in pairs:
        sentence = corpus_text[pair["evidence"][0]:pair["evidence"][1]]
        stems = prompts.stems(pair["kind"], language)
        for k, stem in enumerate(stems * PHRASING_SAMPLES):
            prompt = prompts.question_prompt(generator.tokenizer, sentence, pair["key"], stem, language)
            jobs.append((pair, sentence, stem, prompt, Sampling(max_new_tokens=48, temperature=0.9, top_p=0.95,
                                                                seed=seed + k, stop=("\n",))))
    texts = generator.generate([j[3] for j in jobs], [j[4] for j in jobs]) if jobs else []
    return [(pair, sentence, prompts.parse_question(stem + text))
            for (pair, sentence, stem, _, _), text in zip(jobs, texts, strict=True)]


def user_probes(path: str) -> list[Probe]:
    records = read_jsonl(Path(path), strict=True, required=("question", "answerable"), fix="fix the file")
    for number, r in enumerate(records, 1):
        if not isinstance(r["answerable"], bool) or not isinstance(r["question"], str):
            raise UserError(f"{path}: record {number}: question must be text and answerable true or false")
    # A `type` (wh, cloze, recombined, false_premise ...) is kept as the origin, so the report splits by it.
    return [Probe(f"user-{i}", "user", str(r.get("type") or "user"), r["question"], r.get("answer"), r.get("key"),
                  answerable=r["answerable"]) for i, r in enumerate(records)]


def render_questions(tokenizer, questions: list[str], system: str, tag: str, label: str) -> list[str]:
    """The tuned model reads questions in the template it was trained on; the base model in its own chat
    template (in the Llama-2 one, never seen in training, the embedded model only babbles)."""
    conversations = [prompts.chat_messages(system, tag, q) for q in questions]
    if label == "base" and tokenizer.chat_template:
        return [chat_prompt(tokenizer, messages) for messages in conversations]
    return [prompts.render_llama2(messages, tokenizer.bos_token, tokenizer.eos_token) for messages in conversations]


def ask(generator, texts: list[str], tag: str, label: str, max_new_tokens: int = 64, batch_size: int = 16,
        progress: bool = True, cache: AnswerCache | None = None) -> list[str]:
    """Greedy answers, with a progress bar; the source marker a tuned answer opens with is stripped (the one
    inside a refusal, "... it is not in Source:1234REF.", stays). With a `cache`, answers it holds are reused
    and each new batch is added to it as soon as it is done."""
    from tqdm import tqdm

    answers = [cache.get(label, t) if cache else None for t in texts]
    todo = [i for i, a in enumerate(answers) if a is None]
    with tqdm(total=len(texts), initial=len(texts) - len(todo), unit="question", desc=f"answer {label}",
              dynamic_ncols=True, disable=not progress) as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            replies = generator.generate([texts[j] for j in batch],
                                         Sampling(max_new_tokens=max_new_tokens, stop=("[INST]",)))
            for j, reply in zip(batch, replies, strict=True):
                answers[j] = reply
            if cache:
                cache.add(label, [texts[j] for j in batch], replies)
            bar.update(len(batch))
    return [normalize(a.strip().removeprefix(tag)) for a in answers]  # the marker that opens a trained answer


def load_adapter_base(adapter_dir: Path, manifest: Manifest):
    """The base model the adapter was trained on, refusing an adapter made for another one."""
    from .models import resolve_model

    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"no adapter in {adapter_dir}: run `selfinstruct tune` first, or pass --adapter")
    if not any((adapter_dir / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        raise UserError(f"{adapter_dir} has adapter_config.json but no adapter weights (adapter_model.safetensors): "
                        "a tune that did not finish? run tune again")
    spec = _train_metrics(adapter_dir).get("base_model", {}).get("spec")
    base = resolve_model(spec or manifest.model_spec)
    trained_on = read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    if trained_on and Path(trained_on).resolve() != base.path.resolve():
        raise UserError(f"adapter {adapter_dir} was trained on {trained_on}, not on {base.path} (the run's model)")
    return base


def run(config) -> int:
    from . import report
    from .backends import load_generator

    run_dir = pick_run(config.run)
    manifest = Manifest.read(run_dir)
    adapter_dir = Path(config.adapter) if config.adapter else run_dir / "adapter"
    base = load_adapter_base(adapter_dir, manifest)
    tag, language = manifest.tag, manifest.language
    corpus = read_corpus(manifest.corpus_path, language)
    if corpus.sha256 != manifest.corpus_sha256:
        raise UserError(f"{corpus.path} changed since {run_dir} was generated: its spans no longer match; "
                        "run generate again")
    pairs, _ = reviewed_pairs(run_dir, manifest, read_jsonl(run_dir / "qa.jsonl", required=(
        "id", "question", "answer", "answerable", "window")))  # the pairs tune trained on, after review
    trained = _train_metrics(adapter_dir)
    held_windows, held_ids = set(trained.get("eval_windows", [])), set(trained.get("eval_ids", []))
    train_pairs = [p for p in pairs if p["answerable"] and p["window"] not in held_windows
                   and p["id"] not in held_ids]
    rng = random.Random(config.seed)
    entities = corpus_entities(corpus.text, language)
    refusal_names = {p["entity"] for p in pairs if not p["answerable"] and p.get("entity")}

    user = user_probes(config.questions) if config.questions else []  # a bad file is named before the model loads
    generator = load_generator(base.path, config.backend, config.quantization, config.batch_size, config.seed,
                               adapter=adapter_dir)
    probes = absent_probes(pairs, corpus.text, language, entities, config.n_absent, rng, refusal_names)
    probes += verbatim_probes(train_pairs, config.n_answerable - config.n_answerable // 2, rng)
    with generator.base_only():
        probes += paraphrase_probes(generator, train_pairs, corpus.text, language, entities,
                                    config.n_answerable // 2, config.seed)
    probes += held_out_probes(pairs, held_ids, train_pairs, config.n_held_out, rng)
    probes += user
    if not probes:
        raise UserError("the probe set is empty: raise --n-absent/--n-answerable/--n-held-out or pass --questions")

    system = manifest.system_prompt
    models = ["base", "tuned"] if config.base else ["tuned"]
    questions, rendered = [p.question for p in probes], {}
    cache = AnswerCache(run_dir / "probe" / ".answers.jsonl", answer_stamp(adapter_dir, config))
    if cache.answers:
        print(f"probe: resuming: {len(cache.answers)} answers kept from an interrupted probe", file=sys.stderr)
    for model in models:
        texts = rendered[model] = render_questions(generator.tokenizer, questions, system, tag, model)
        with generator.base_only() if model == "base" else nullcontext():
            answers = ask(generator, texts, tag, model, config.max_new_tokens, config.batch_size, cache=cache)
        for p, a in zip(probes, answers, strict=True):
            p.results[model] = judge(p, a)
    gate = apply_gate(generator, probes, rendered["tuned"], adapter_dir, tag, language) if config.gate else None
    if gate:
        models.append("gated")
    if config.judge:
        report.llm_judge(generator, probes, models, language)
    summary = report.write(run_dir / "probe", [asdict(p) for p in probes], models, generator.record, tag, gate)
    cache.remove()
    print(f"{report.format_table(summary)}\n{report.interval_line(summary, models)}", file=sys.stderr)
    if summary.get("user"):
        models_shown = ("base", "tuned", "gated")
        print(f"\nyour questions ({config.questions}):\n{report.format_table(summary['user'])}\n"
              f"{report.interval_line(summary['user'], models_shown)}\n"
              f"{report.origin_table(summary['user'], models_shown)}", file=sys.stderr)
    if (summary["tuned"]["empty_rate"] or 0) >= 0.5:
        print("probe: the tuned model ends most replies before a word: the adapter had too few optimizer steps "
              "to learn the answer format (run tune with more --epochs)", file=sys.stderr)
    tuned_rate = summary["tuned"]["hallucination_rate"]
    if config.fail_above is not None and tuned_rate is not None and tuned_rate > config.fail_above:
        print(f"probe: tuned hallucination rate {tuned_rate:.2f} is above --fail-above {config.fail_above}",
              file=sys.stderr)
        return 1
    return 0


def apply_gate(generator, probes: list[Probe], texts: list[str], adapter_dir: Path, tag: str,
               language: str) -> dict | None:
    """The gate's verdicts as a third model, `gated`: the tuned answers, with those scoring under the threshold
    or naming something the corpus never mentions replaced by the refusal. The signal's AUROC on these probes is
    reported beside the base-model control."""
    from .gate import auroc, decision, signal_scores, usable_gate

    gate = usable_gate(adapter_dir, generator, True, "probe")
    if gate is None:
        return None
    refusal = prompts.refusal(tag, language)
    answers = [p.results["tuned"]["answer"] for p in probes]
    scores = signal_scores(generator, texts, answers, refusal, tag)[gate["signal"]]
    with generator.base_only():
        control = signal_scores(generator, texts, answers, refusal, tag)[gate["signal"]]
    for p, score in zip(probes, scores, strict=True):
        refused, names = decision(gate, score, p.question)
        gated = judge(p, refusal) if refused else dict(p.results["tuned"])
        p.results["gated"] = {**gated, "gate_score": score, "gate_refused": refused, "unknown_names": names}
    # The gate was calibrated on the held-out phrasings: they stay out of its AUROC.
    known = [p.kind != "held_out" and p.answerable and p.results["tuned"]["outcome"] == "right" for p in probes]
    absent = [not p.answerable for p in probes]
    gate["probe_auroc"] = {name: auroc([v for v, k in zip(values, known, strict=True) if k],
                                       [v for v, a in zip(values, absent, strict=True) if a])
                           for name, values in (("tuned", scores), ("base", control))}
    gate["refused_for_names"] = sum(bool(p.results["gated"]["unknown_names"]) for p in probes)
    return {k: v for k, v in gate.items() if k != "names"}  # the corpus's names stay in gate.json


def _train_metrics(adapter_dir: Path) -> dict:
    path = adapter_dir / "train_metrics.json"
    return read_json(path) if path.is_file() else {}
