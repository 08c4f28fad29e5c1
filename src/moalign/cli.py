"""The ``moalign`` command line: parse, load config, call a stage or a pipeline. Nothing else."""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from moalign.errors import UserError
from moalign.rm.cli import rm_app

app = typer.Typer(
    help="Multi-objective, controllable preference alignment for small language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Built-in models and the model cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(rm_app, name="rm")

_state = {"debug": False}

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe key, e.g. --set stages.0.sft.learning_rate=1e-5 (repeatable)."),
]

ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="Apply the recipe's named profile of overrides (profiles.NAME).")
]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for user errors.")] = False,
) -> None:
    _state["debug"] = debug


def _repo_recipes() -> Path:
    """The ``recipes/`` folder of the source tree this package was installed from."""
    return Path(__file__).resolve().parents[2] / "recipes"


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
    profile: ProfileOption = None,
    output_dir: Annotated[Path | None, typer.Option(help="Parent of the run directory (default: recipe's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the run in the run directory (finished stages are kept; the recipe must match)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Check datasets and stage references, report token budgets; train nothing.")
    ] = False,
) -> None:
    """Run every stage of a recipe; writes runs/NAME/."""
    from moalign.pipeline import run_recipe
    from moalign.recipe import load_recipe

    loaded = load_recipe(recipe, set_ or [], profile)
    if dry_run:
        from moalign.plan import dry_run as plan_dry_run
        from moalign.plan import format_plan

        typer.echo(format_plan(plan_dry_run(loaded)))
        return
    result = run_recipe(loaded, output_dir=output_dir, overwrite=overwrite, resume=resume)
    typer.echo(f"run written to {result.root}")


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/NAME).")]) -> None:
    """Continue an interrupted run with the recipe saved in it, from its latest complete checkpoint."""
    from moalign.pipeline import resume_run

    typer.echo(f"run written to {resume_run(run_dir).root}")


@app.command()
def check(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
    profile: ProfileOption = None,
) -> None:
    """Validate a recipe and print its resolved configuration (every default filled in)."""
    from moalign.recipe import load_recipe

    typer.echo(load_recipe(recipe, set_ or [], profile).to_yaml(), nl=False)


@app.command()
def demo(
    set_: SetOption = None,
    fast: Annotated[bool, typer.Option("--fast", help="A few minutes: the recipe's 'fast' profile.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Longer and stronger: the recipe's 'full' profile.")] = False,
    ablate: Annotated[
        bool,
        typer.Option("--ablate", help="Evaluate every stage's model (the 'ablate' profile): per-stage contribution."),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing demo run.")] = True,
) -> None:
    """Run the main job: recipes/demo.yaml on the embedded models, offline; print the summary table."""
    from moalign.pipeline import run_recipe
    from moalign.recipe import load_recipe
    from moalign.report.summary import summary_table

    if fast and full:
        raise UserError("--fast and --full exclude each other")
    path = _repo_recipes() / "demo.yaml"
    if not path.exists():
        raise UserError(f"demo recipe not found at {path} (run from a source checkout)")
    profiles = (["fast"] if fast else (["full"] if full else [])) + (["ablate"] if ablate else [])
    result = run_recipe(load_recipe(path, set_ or [], profiles), overwrite=overwrite)
    typer.echo(summary_table(result.root))
    typer.echo(f"run written to {result.root}; report: {result.root / 'report.html'}")


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="User message.")],
    model: Annotated[str, typer.Option(help="Model spec.")] = "builtin:smollm2-135m-instruct",
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget.")] = 128,
    temperature: Annotated[float, typer.Option(help="0 means greedy.")] = 0.0,
) -> None:
    """Generate one chat reply from a model (a quick check that a model loads and speaks)."""
    from moalign.generation import SamplingConfig, generate
    from moalign.models import load_causal_lm, load_tokenizer

    tok, lm = load_tokenizer(model), load_causal_lm(model)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    typer.echo(generate(lm, tok, [prompt], sampling, progress=False)[0][0].text)


@app.command()
def merge(
    adapter: Annotated[str, typer.Argument(help="A LoRA checkpoint directory (adapter_config.json).")],
    output: Annotated[Path, typer.Argument(help="Where to write the merged full model.")],
) -> None:
    """Fold a chain of LoRA adapters into its root model and save a plain HF checkpoint."""
    from moalign.models.merge import merge_model

    merge_model(adapter, output)
    typer.echo(f"merged model written to {output}")


def multi_value_options(args: list[str], names: tuple[str, ...]) -> dict[str, list[str]]:
    """``--name A B --other C`` -> ``{"--name": ["A", "B"], "--other": ["C"]}`` for the options ``names``."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for arg in args:
        if arg.startswith("--"):
            if arg not in names:
                raise UserError(f"unknown option {arg}; expected {', '.join(names)}")
            current = arg
            out.setdefault(arg, [])
        elif current is None:
            raise UserError(f"unexpected argument '{arg}'; expected {', '.join(names)} before it")
        else:
            out[current].append(arg)
    return out


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def soup(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the souped model.")],
    allow_unnormalised: Annotated[bool, typer.Option(help="Allow weights that do not sum to 1.")] = False,
) -> None:
    """Rewarded Soups (seed 002 eq. 2): theta = sum_i lambda_i theta_i, saved as a plain HF checkpoint.

    moalign soup --models A B ... --weights 0.5 0.5 ... --out DIR  (full checkpoints, or LoRA
    adapter directories on one base: each adapter is merged into the base before interpolating).
    """
    from moalign.models.soup import soup_models

    values = multi_value_options(ctx.args, ("--models", "--weights"))
    models, raw_weights = values.get("--models", []), values.get("--weights", [])
    try:
        weights = [float(w) for w in raw_weights]
    except ValueError:
        raise UserError(f"soup: --weights must be numbers, got {' '.join(raw_weights)}") from None
    soup_models(models, weights, out, normalised=not allow_unnormalised)
    typer.echo(f"souped model written to {out}")


@models_app.command("list")
def models_list() -> None:
    """Show the built-in models, where they come from and whether they are ready to load."""
    from moalign.models import BUILTINS, moalign_home

    typer.echo(f"cache: {moalign_home() / 'models'}")
    for m in BUILTINS.values():
        try:
            m.package_file()
            state = ("cached" if m.is_cached() else "not converted yet") if m.needs_conversion else "ready"
        except UserError:
            state = f"package {m.package} not installed"
        typer.echo(f"{m.spec:34s} {state:20s} {m.description} [PyPI: {m.package}]")


@models_app.command("pull")
def models_pull(
    spec: Annotated[str, typer.Argument(help="builtin:NAME, a hub id or a local directory.")],
) -> None:
    """Materialise a model: convert a built-in into the cache, or check a hub/local model resolves."""
    from moalign.models import resolve_model

    typer.echo(resolve_model(spec))


def _judge_spec(judge: str | None) -> Any:
    """``--judge``: a scorer name, or a YAML/JSON mapping ``{name: {config}}``."""
    import yaml

    if judge is None:
        return None
    try:
        parsed = yaml.safe_load(judge)
    except yaml.YAMLError as exc:
        raise UserError(f"--judge: not a scorer name or a YAML mapping: {exc}") from None
    return parsed if isinstance(parsed, dict) else judge


@app.command(name="eval")
def eval_command(
    more_models: Annotated[list[str] | None, typer.Argument(help="Candidate model specs (also via --models).")] = None,
    models: Annotated[
        list[str] | None, typer.Option("--models", help="Candidate models: --models A B, or NAME=SPEC.")
    ] = None,
    reference: Annotated[str, typer.Option(help="The model candidates are judged against.")] = (
        "builtin:smollm2-135m-instruct"
    ),
    dataset: Annotated[str, typer.Option(help="Prompt set: builtin:NAME, a file or a hub id.")] = "builtin:ifeval-lite",
    split: Annotated[str, typer.Option(help="Split of the prompt set.")] = "test",
    num_samples: Annotated[int, typer.Option(help="Prompts evaluated (the split's first ones).")] = 64,
    decoding: Annotated[str, typer.Option(help="greedy | sampled (T 0.6, top-p 0.95) | beam (4, lp 0.9).")] = "greedy",
    judge: Annotated[
        str | None, typer.Option(help="Scorer name or YAML mapping, e.g. '{perplexity: {}}'; default: task objectives.")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per response.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Prompts per generation batch.")] = 8,
    controllability: Annotated[
        list[str] | None, typer.Option("--controllability", help="Tag dimension to sweep (repeatable).")
    ] = None,
    control_prompts: Annotated[int, typer.Option(help="Base prompts per controllability sweep.")] = 8,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    cache: Annotated[bool, typer.Option(help="Reuse cached generations ($MOALIGN_HOME/generations).")] = True,
    output: Annotated[Path, typer.Option(help="Output directory (metrics.json, samples.jsonl, report.html).")] = Path(
        "eval"
    ),
) -> None:
    """Generate with candidate models and a reference, judge, and write metrics, samples and report.html."""
    from pydantic import ValidationError

    from moalign.eval import ControllabilityConfig, EvalSettings, GenerationCache, evaluate
    from moalign.eval.evaluate import labelled_models
    from moalign.report import build_report

    specs = [*(models or []), *(more_models or [])]
    if not specs:
        raise UserError("eval: name at least one candidate model (--models A B)")
    try:
        settings = EvalSettings(
            dataset=dataset,
            split=split,
            num_samples=num_samples,
            decoding=decoding,  # type: ignore[arg-type]
            judge=_judge_spec(judge),
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=seed,
            controllability=(
                ControllabilityConfig(dimensions=controllability, num_prompts=control_prompts)
                if controllability
                else None
            ),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"eval: {problems}") from None
    candidates = labelled_models(specs)
    evaluate(candidates, reference, settings, output, cache=GenerationCache() if cache else None)
    typer.echo(f"evaluation written to {output} (report: {build_report(output)})")


@app.command()
def satisfaction(
    model: Annotated[str, typer.Option(help="Model spec.")] = "builtin:smollm2-135m-instruct",
    dataset: Annotated[str, typer.Option(help="Prompts with constraints.")] = "builtin:ifeval-lite",
    split: Annotated[str, typer.Option(help="Split.")] = "test",
    limit: Annotated[int, typer.Option(help="First N prompts.")] = 100,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Prompts decoded together.")] = 8,
    responses: Annotated[Path | None, typer.Option(help="Write prompts, responses and results here (JSONL).")] = None,
) -> None:
    """Constraint-satisfaction rates of a model on task-suite prompts, greedy (IFEval's prompt and constraint
    levels), as JSON."""
    import json

    from moalign.data.satisfaction import measure_constraint_satisfaction

    summary = measure_constraint_satisfaction(
        model,
        dataset,
        split,
        limit=limit,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        responses_path=str(responses) if responses else None,
    )
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory or an eval output directory.")]) -> None:
    """(Re)build report.html from a run directory alone (evaluations and training metrics)."""
    from moalign.report import build_report

    typer.echo(f"report written to {build_report(run_dir)}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (or eval output directories).")],
    html: Annotated[Path | None, typer.Option(help="Also write the table as an HTML page here.")] = None,
) -> None:
    """One table across runs: method, average reward, difference, win rate, BLEU-1/2/4, perplexity (markdown)."""
    from moalign.atomic import atomic_write_text
    from moalign.report import compare_rows, html_table, markdown_table

    rows, warnings = compare_rows(runs)
    typer.echo(markdown_table(rows, warnings), nl=False)
    if html is not None:
        atomic_write_text(html, html_table(rows, warnings))
        typer.echo(f"HTML table written to {html}")


def _numbers(text: str | None, option: str) -> list[float] | None:
    """``"0,0.5"`` -> ``[0.0, 0.5]`` (None stays None)."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated numbers, got '{text}'") from None


@app.command()
def pareto(
    sources: Annotated[list[Path], typer.Argument(help="Sweep roots, run or eval directories: one method each.")],
    reference: Annotated[
        str | None, typer.Option(help="Hypervolume reference point, e.g. 0,0 (default: the minimum over all points).")
    ] = None,
    objectives: Annotated[str | None, typer.Option(help="Axes, e.g. brevity,structure (default: shared ones).")] = None,
    output: Annotated[Path, typer.Option(help="Where pareto.json and report.html go.")] = Path("pareto"),
) -> None:
    """Pareto fronts of methods (MORLHF sweeps, soups, tag intensities), hypervolumes and training cost."""
    from moalign.report import build_report
    from moalign.report.fronts import write_fronts

    axes = objectives.split(",") if objectives else None
    result = write_fronts(sources, output, objectives=axes, reference=_numbers(reference, "--reference"))
    assert result is not None
    for m in result["methods"]:
        on_front = sum(p["on_front"] for p in m["points"])
        typer.echo(f"{m['name']}: {len(m['points'])} points, {on_front} on the front, HV {m['hypervolume']:.4g}")
    typer.echo(f"report written to {build_report(output)}")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="A smoke run with tiny workloads (seconds on a tiny model).")] = False,
    model: Annotated[str, typer.Option(help="Policy model both sides run.")] = "builtin:smollm2-135m-instruct",
    reward_backbone: Annotated[str, typer.Option(help="Encoder of the reward-phase comparison.")] = "builtin:minilm-l6",
    k: Annotated[int, typer.Option(help="Objectives (separate reward models vs heads of one model).")] = 3,
    out: Annotated[Path, typer.Option(help="Where the results go as JSON.")] = Path("bench.json"),
) -> None:
    """Benchmarks against TRL's defaults: peak matmul rate, DPO, GRPO, evaluation generation, reward phase."""
    from moalign.bench.suite import format_table, run_bench

    result = run_bench(model, quick=quick, reward_backbone=reward_backbone, k=k, out=out)
    typer.echo(format_table(result))
    typer.echo(f"results written to {out}")


def _stage_command(stage: str) -> Any:
    def command(
        recipe: Annotated[
            Path | None, typer.Option(help="Take run-level keys (model, seed, objectives) from this recipe.")
        ] = None,
        model: Annotated[str | None, typer.Option(help="Model spec to start from.")] = None,
        name: Annotated[str | None, typer.Option(help="Run name (directory under --output-dir).")] = None,
        set_: Annotated[
            list[str] | None, typer.Option("--set", help=f"A {stage} config key, e.g. --set beta=0.1 (repeatable).")
        ] = None,
        output_dir: Annotated[Path | None, typer.Option(help="Parent of the run directory.")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    ) -> None:
        from moalign.config.yaml_source import YamlSource, apply_override, load_yaml
        from moalign.pipeline import run_recipe
        from moalign.recipe import validate_recipe

        source = load_yaml(recipe) if recipe else YamlSource(data={}, name="<command line>")
        data = source.data if isinstance(source.data, dict) else {}
        data["stages"] = [{stage: {}}]
        data["name"] = name or data.get("name") or stage.replace("_", "-")
        if model:
            data["model"] = model
        source.data = data
        for expr in set_ or []:
            apply_override(source, f"stages.0.{stage}.{expr}")
        result = run_recipe(validate_recipe(source), output_dir=output_dir, overwrite=overwrite)
        typer.echo(f"run written to {result.root}")

    command.__doc__ = f"Run the '{stage}' stage alone (its keys via --set KEY=VALUE)."
    return command


DEDICATED_COMMANDS = {"eval"}
"""Stages whose command line is a dedicated command rather than the generic ``--set`` one."""


def _register_stage_commands() -> None:
    from moalign.stages import STAGES

    for stage in STAGES:
        if stage in DEDICATED_COMMANDS:
            continue
        app.command(name=stage.replace("_", "-"))(_stage_command(stage))


_register_stage_commands()


def main() -> None:
    try:
        app()
    except UserError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
