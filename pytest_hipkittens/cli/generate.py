"""``hk-generate``: one prompt, one response, one candidate file (the seed's generate.py).

``--response-file`` replays a saved response without calling any LLM; otherwise the
gateway in ``$LLM_GATEWAY_URL`` is asked with the key in ``$LLM_GATEWAY_KEY``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import die


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hk-generate", description=__doc__.splitlines()[0])
    parser.add_argument("--problem", required=True, metavar="PROBLEM.py")
    parser.add_argument(
        "--output", required=True, metavar="CODE.py", help="where the candidate goes"
    )
    parser.add_argument(
        "--prompt", metavar="FILE", help="prompt file (default: from prompts/config.json)"
    )
    parser.add_argument(
        "--prompts", metavar="DIR", help="folder with config.json (default: prompts/)"
    )
    parser.add_argument(
        "--backend", default="cpu", help="prompt set: cpu, cuda or hip (default: cpu)"
    )
    parser.add_argument(
        "--response-file", metavar="FILE", help="use this saved response, no LLM call"
    )
    parser.add_argument("--model", default="gpt-4o")
    parser.add_argument("--save-prompt", metavar="FILE", help="also write the prompt sent")
    args = parser.parse_args(argv)

    from ..extract import extract_code
    from ..llm import LLMError, LLMRequest, OpenAIClient
    from ..problems import ProblemError, load_problem_file
    from ..prompts import PromptConfigError, initial_prompt, load_config
    from ..results import write_atomic
    from ..session import PACKAGE_PROMPTS

    try:
        problem = load_problem_file(args.problem)
    except ProblemError as exc:
        die(str(exc))
    try:
        if args.prompt:
            template = Path(args.prompt).read_text(encoding="utf-8")
        else:
            config = load_config(Path(args.prompts or PACKAGE_PROMPTS) / "config.json")
            template = config.prompt_file(args.backend, problem).read_text(encoding="utf-8")
    except (OSError, PromptConfigError) as exc:
        die(str(exc))
    prompt = initial_prompt(template, problem, args.backend)
    if args.save_prompt:
        write_atomic(Path(args.save_prompt), prompt)
    if args.response_file:
        try:
            text = Path(args.response_file).read_text(encoding="utf-8")
        except OSError as exc:
            die(f"cannot read --response-file: {exc}")
    else:
        try:
            client = OpenAIClient(model=args.model)
            text = client.complete(
                LLMRequest([{"role": "user", "content": prompt}], problem.key, 1, 1)
            ).text
        except LLMError as exc:
            die(str(exc))
    extracted = extract_code(text)
    if extracted.code is None:
        die(f"no code in the response: {extracted.reason}")
    write_atomic(Path(args.output), extracted.code)
    print(f"wrote {args.output} ({extracted.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
