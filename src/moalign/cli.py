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
    output_dir: Annotated[Path | None, typer.Option(help="Parent of the run directory (default: recipe's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
) -> None:
    """Run every stage of a recipe; writes runs/NAME/."""
    from moalign.config import load_recipe
    from moalign.pipeline import run_recipe

    loaded = load_recipe(recipe, set_ or [])
    result = run_recipe(loaded, output_dir=output_dir, overwrite=overwrite)
    typer.echo(f"run written to {result.root}")


@app.command()
def check(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
) -> None:
    """Validate a recipe and print its resolved configuration (every default filled in)."""
    from moalign.config import load_recipe

    typer.echo(load_recipe(recipe, set_ or []).to_yaml(), nl=False)


@app.command()
def demo(
    set_: SetOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing demo run.")] = True,
) -> None:
    """Run the main job: recipes/demo.yaml on the embedded models, offline."""
    from moalign.config import load_recipe
    from moalign.pipeline import run_recipe

    path = _repo_recipes() / "demo.yaml"
    if not path.exists():
        raise UserError(f"demo recipe not found at {path} (run from a source checkout)")
    result = run_recipe(load_recipe(path, set_ or []), overwrite=overwrite)
    typer.echo(f"run written to {result.root}")


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
    """Fold LoRA adapters into their base model and save a plain HF checkpoint."""
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.models.loading import ADAPTER_CONFIG
    from moalign.training.checkpoint import save_final_model

    if not (Path(adapter) / ADAPTER_CONFIG).exists():
        raise UserError(f"'{adapter}' is not a LoRA checkpoint (no {ADAPTER_CONFIG})")
    save_final_model(load_causal_lm(adapter), load_tokenizer(adapter), output)
    typer.echo(f"merged model written to {output}")


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
        from moalign.config.recipe import validate_recipe
        from moalign.config.yaml_source import YamlSource, apply_override, load_yaml
        from moalign.pipeline import run_recipe

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


def _register_stage_commands() -> None:
    from moalign.stages import STAGES

    for stage in STAGES:
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
