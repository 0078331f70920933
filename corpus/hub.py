"""Upload a corpus folder to the Hugging Face Hub as a dataset repo.

One commit: the Parquet files, plots, ``corpus_stats.json`` and the card, merged into the
repo's existing README.md (text outside the distill markers is kept). Parquet files the
repo holds under ``data/`` that this corpus no longer has are deleted in the same commit,
so the card's ``data/<split>-*`` globs never pick up stale shards. Any failure (offline,
no token, no rights) is a DistillError that names the repo; the local corpus is never
touched by the upload.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.corpus.card import merge_card, split_card

from distill.config import HubConfig
from distill.errors import DistillError

UPLOADED = ("data", "plots")


def make_api(hub: HubConfig):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.endpoint, token=os.environ.get(hub.token_env) or None)


def _existing_card(api, repo: str) -> str | None:
    from huggingface_hub.errors import EntryNotFoundError, RemoteEntryNotFoundError

    try:
        path = api.hf_hub_download(repo, "README.md", repo_type="dataset")
    except (EntryNotFoundError, RemoteEntryNotFoundError):
        return None
    return Path(path).read_text(encoding="utf-8")


def push(corpus_dir: Path, repo: str, hub: HubConfig, api: Any = None) -> str:
    """Upload ``corpus_dir`` to ``repo``; returns the repo's URL. ``api`` stands in for
    ``huggingface_hub.HfApi`` in tests."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    corpus_dir = Path(corpus_dir)
    card = corpus_dir / "README.md"
    if not card.is_file():
        raise DistillError(f"no corpus card in {corpus_dir}; run `distill corpus` before pushing")
    files = [p for d in UPLOADED for p in sorted((corpus_dir / d).rglob("*")) if p.is_file()]
    files += [corpus_dir / n for n in ("corpus_stats.json", "config.yaml") if (corpus_dir / n).is_file()]
    head, text = split_card(card.read_text(encoding="utf-8"))
    try:
        api = api or make_api(hub)
        url = api.create_repo(repo, repo_type="dataset", private=hub.private, exist_ok=True)
        merged = merge_card(_existing_card(api, repo), head, _generated_part(text))
        ops: list[Any] = [CommitOperationAdd(path_in_repo=p.relative_to(corpus_dir).as_posix(), path_or_fileobj=str(p))
                          for p in files]
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=merged.encode()))
        ours = {op.path_in_repo for op in ops}
        stale = [f for f in api.list_repo_files(repo, repo_type="dataset")
                 if f.startswith("data/") and f.endswith(".parquet") and f not in ours]
        ops += [CommitOperationDelete(path_in_repo=f) for f in stale]
        api.create_commit(repo, ops, commit_message="distill corpus: data, card and plots", repo_type="dataset")
    except DistillError:
        raise
    except Exception as e:  # offline, unreachable endpoint, 401/403, ...: say what to do
        raise DistillError(
            f"could not upload the corpus to the Hub repo {repo!r} ({type(e).__name__}: {str(e)[:300]}). "
            f"The local corpus in {corpus_dir} is complete and unchanged; check the network, HF_HUB_OFFLINE and the "
            f"token in ${hub.token_env}, then rerun the same command with --push-to-hub {repo} "
            f"(the build is skipped, only the upload runs).") from e
    return str(url)


def _generated_part(text: str) -> str:
    """The marker-wrapped part of the local card (the local card may carry a user's notes too)."""
    from distill.corpus.card import BEGIN, END

    i, j = text.find(BEGIN), text.find(END)
    return text[i : j + len(END)] + "\n" if i != -1 and j > i else text
