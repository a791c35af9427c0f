"""Cluster names from a CLIP model (annotation/naming.py, models/clip_model.py): ranking, prompt
ensembling and Hungarian uniqueness on planted embeddings; the vocabulary and its cache; the
weights; then a tiny open_clip model with random weights, saved by the test, through the whole
eval.py --annotate path on the generated folder, and a suggestion clicked in headless Chromium."""
import csv
import json
import os

import numpy as np
import pytest
import torch
import yaml
from scipy.optimize import linear_sum_assignment

from annotation import naming
from annotation.names import AnnotationError, read_names
from annotation.naming import (Vocabulary, cluster_embedding, ensemble, rank_names,
                               read_vocabulary, unique_assignment)
from annotation.tables import from_cell
from models import clip_model
from models.clip_model import NamingModelError, load_clip_model, weights_path
from models.timm_backbone import WeightsUnavailable
from tests.browser import open_page, wait_for_download
from tests.clip_tiny import write_tiny_clip
from tests.test_annotate import js, read_csv, run  # noqa: F401 (fixtures)
from utils.checkpoint import WeightsMismatch


def unit(rng, *shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ------------------------------------------------------------------------ planted embeddings

def test_a_cluster_planted_next_to_a_name_gets_it_first():
    rng = np.random.default_rng(0)
    text = unit(rng, 200, 64)
    images = [text[17] + 0.3 * unit(rng, 40, 64), text[3] + 0.3 * unit(rng, 40, 64)]
    clusters = np.stack([cluster_embedding(i) for i in images])
    names = [f"name {j}" for j in range(200)]
    ranked = rank_names(clusters, text, names, logit_scale=100.0)
    assert [s.ranked[0][0] for s in ranked] == ['name 17', 'name 3']
    assert [s.chosen for s in ranked] == ['name 17', 'name 3']
    for s in ranked:
        scores = [score for _, score in s.ranked]
        assert len(s.ranked) == 3 and len({n for n, _ in s.ranked}) == 3
        assert scores == sorted(scores, reverse=True) and 0.5 < scores[0] <= 1
    # the scores are CLIP's softmax over the whole vocabulary at its logit scale
    logits = 100.0 * clusters[0] @ text.T
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert ranked[0].ranked[0][1] == pytest.approx(expected[17], rel=1e-4)


def test_prompt_ensembling_averages_the_templates():
    """A cluster between the two templates' embeddings of name 5: neither template alone ranks
    name 5 first (each has a decoy nearer), their normalised mean does."""
    rng = np.random.default_rng(1)
    per_template = unit(rng, 2, 30, 64)
    target = cluster_embedding(per_template[:, 5])
    per_template[0, 8] = cluster_embedding([target, per_template[1, 5]])  # decoy of template 0
    per_template[1, 9] = cluster_embedding([target, per_template[0, 5]])  # decoy of template 1
    names = [str(j) for j in range(30)]
    for alone in per_template:
        assert rank_names(target[None], alone, names, 100.0)[0].ranked[0][0] != '5'
    text = ensemble(per_template)
    assert np.allclose(text[5], target, atol=1e-6)
    assert np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-6)
    assert rank_names(target[None], text, names, 100.0)[0].ranked[0][0] == '5'


def test_two_clusters_nearest_one_name_get_distinct_names():
    rng = np.random.default_rng(2)
    text = unit(rng, 50, 64)
    near = cluster_embedding([text[4], text[4], text[9]])   # nearest 4, then 9
    nearer = cluster_embedding([text[4], text[4], text[4], text[20]])  # nearer still to 4
    ranked = rank_names(np.stack([near, nearer]), text, [str(j) for j in range(50)], 100.0)
    assert ranked[0].ranked[0][0] == ranked[1].ranked[0][0] == '4'
    assert [s.chosen for s in ranked] == ['9', '4']  # the sum of logits is highest so
    assert ranked[0].chosen_score == pytest.approx(dict(ranked[0].ranked)['9'])


@pytest.mark.parametrize('rows, columns', [(5, 40), (12, 12), (30, 500)])
def test_unique_assignment_is_the_full_hungarian_optimum(rows, columns):
    logits = np.random.default_rng(rows).standard_normal((rows, columns))
    assignment = unique_assignment(logits)
    full_rows, full = linear_sum_assignment(logits, maximize=True)
    assert len(set(assignment)) == rows
    assert logits[np.arange(rows), assignment].sum() == pytest.approx(logits[full_rows, full].sum())


# ------------------------------------------------------------------------ vocabulary

def test_default_vocabulary_is_timms_imagenet21k_lemmas():
    vocabulary = naming.default_vocabulary()
    assert len(vocabulary) == 20102 == len(set(vocabulary.names))  # 21,844 synsets, repeats out
    i = vocabulary.names.index('organism')
    assert vocabulary.synonyms[i] == ['organism', 'being']


def test_vocabulary_file_keeps_odd_names_and_drops_blanks_and_duplicates(tmp_path):
    path = tmp_path / 'words.txt'
    path.write_bytes('\ufeffcat\n\n  dog \r\ncat\n   \nline\u2028sep\rinside\n\u202ertl\u200f\n'
                     .encode('utf-8'))
    assert read_vocabulary(str(path)).names == ['cat', 'dog', 'line\u2028sep\rinside',
                                                 '\u202ertl\u200f']


@pytest.mark.parametrize('content, message', [
    (b'\x89PNG\r\n\x1a\n\x00\x00', 'not a text file'),
    (b'cat\x00dog\n', r'not a text file \(it holds NUL bytes\)'),
    (b'\n  \n\r\n', 'holds no name'),
])
def test_bad_vocabulary_file_is_an_error_naming_it(tmp_path, content, message):
    path = tmp_path / 'my words.txt'
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=message) as error:
        read_vocabulary(str(path))
    assert str(path) in str(error.value)


def test_vocabulary_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(naming, 'MAX_VOCABULARY_BYTES', 1000)
    path = tmp_path / 'big.txt'
    path.write_text('word\n' * 300)
    with pytest.raises(AnnotationError, match=r'big.txt: the vocabulary file is .* over the '
                                              r'limit'):
        read_vocabulary(str(path))


# ------------------------------------------------------------------------ weights and cache

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return write_tiny_clip(str(tmp_path_factory.mktemp('clip')))


def test_both_weights_formats_load_the_same_model(tiny):
    config, safetensors, checkpoint, state = tiny
    for path in (safetensors, checkpoint):
        loaded = load_clip_model(config, weights_path(config, path)).model.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_weights_that_do_not_fit_list_the_keys(tiny, tmp_path):
    config, _, _, state = tiny
    from safetensors.torch import save_file
    bad = dict(state)
    del bad['ln_final.weight']
    bad['extra.bias'] = torch.zeros(3)
    save_file(bad, str(tmp_path / 'bad.safetensors'))
    with pytest.raises(WeightsMismatch, match=r'missing keys \(1\): ln_final.weight(.|\n)*'
                                              r'unexpected keys \(1\): extra.bias'):
        load_clip_model(config, str(tmp_path / 'bad.safetensors'))


class Payload:
    def __reduce__(self):
        return (os.system, ('touch pwned',))


def test_a_pickle_with_code_is_never_run(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({'state_dict': Payload()}, tmp_path / 'evil.pt')
    with pytest.raises(NamingModelError, match='cannot read the weights file'):
        load_clip_model(tiny[0], str(tmp_path / 'evil.pt'))
    assert not (tmp_path / 'pwned').exists()


def test_offline_without_a_file_says_what_to_fetch_at_once(monkeypatch):
    monkeypatch.setattr(clip_model.huggingface_hub, 'try_to_load_from_cache', lambda *a: None)
    monkeypatch.setattr(clip_model, 'hub_reachable', lambda: False)
    with pytest.raises(WeightsUnavailable) as error:
        weights_path('ViT-B-32', 'hub')
    message = str(error.value)
    for part in ('timm/vit_base_patch32_clip_224.openai', 'open_clip_model.safetensors',
                 'https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/'
                 'open_clip_model.safetensors', '--naming-weights'):
        assert part in message


@pytest.mark.parametrize('model, weights, message', [
    ('ViT-Q-99', 'hub', "open_clip has no model 'ViT-Q-99'"),
    ('ViT-B-32:nope', 'hub', "has no pretrained tag 'nope'"),
    ('missing.json', 'hub', 'model config not found'),
])
def test_bad_model_names_are_errors(model, weights, message):
    with pytest.raises(NamingModelError, match=message):
        weights_path(model, weights)


@pytest.mark.parametrize('content, message', [
    ('{"model_cfg": {"embed_dim": 8}}', 'needs embed_dim, vision_cfg and text_cfg'),
    ('not json', 'not an open_clip model config'),
])
def test_bad_model_config_is_an_error_naming_it(tmp_path, content, message):
    path = tmp_path / 'my model.json'
    path.write_text(content)
    with pytest.raises(NamingModelError, match=message) as error:
        weights_path(str(path), str(path))
    assert str(path) in str(error.value)


def test_text_embeddings_are_cached_by_model_weights_templates_and_vocabulary(tiny, tmp_path,
                                                                              monkeypatch):
    config, safetensors, checkpoint, _ = tiny
    clip = load_clip_model(config, safetensors)
    calls = []
    embed = naming.embed_vocabulary
    monkeypatch.setattr(naming, 'embed_vocabulary', lambda *a: calls.append(a[2]) or embed(*a))
    words = Vocabulary(['cat', 'dog', 'tree'], 'test')
    cache = str(tmp_path / 'cache')

    def embeddings(vocabulary=words, templates=('a photo of a {}.',), model=clip):
        return naming.cached_text_embeddings(model, vocabulary, templates, cache, 'cpu',
                                             report=lambda m: None)
    first = embeddings()
    assert np.array_equal(embeddings(), first) and len(calls) == 1  # cached
    embeddings(templates=('a photo of a {}.', 'art of the {}.'))
    embeddings(vocabulary=Vocabulary(['cat', 'dog', 'bird'], 'test'))
    embeddings(model=load_clip_model(config, checkpoint))  # the same weights, another file hash
    assert len(calls) == 4
    for name in os.listdir(cache):  # a damaged cache is rebuilt
        (tmp_path / 'cache' / name).write_bytes(b'PK\x03\x04 damaged')
    assert np.allclose(embeddings(), first) and len(calls) == 5
    assert first.shape == (3, 16)


def test_trimmed_text_encoding_equals_open_clips(tiny, monkeypatch):
    """Cut to the longest prompt of its batch, batched by length: the embeddings of
    open_clip's encode_text, in the vocabulary's order."""
    clip = load_clip_model(tiny[0], tiny[1])
    names = ['hot dog stand by the sea', 'dog', 'sea lion in the water', 'ox', 'red car']
    tokens = clip.tokenizer([f'a photo of a {n}.' for n in names])
    with torch.no_grad():
        full = torch.nn.functional.normalize(clip.model.encode_text(tokens), dim=-1)
        assert torch.allclose(naming.encode_text(clip.model, tokens), full, atol=1e-5)
    monkeypatch.setattr(naming, 'TEXT_BATCH', 2)
    embedded = naming.embed_vocabulary(clip, names, ('a photo of a {}.',), 'cpu')
    assert np.allclose(embedded, full.numpy(), atol=1e-5)


def test_a_vocabulary_of_100000_names_and_a_1mb_line(tiny, tmp_path):
    path = tmp_path / 'huge.txt'
    lines = [f'thing {i}' for i in range(99_999)] + ['x' * 2 ** 20]
    path.write_text('\n'.join(lines), encoding='utf-8')
    vocabulary = read_vocabulary(str(path))
    assert len(vocabulary) == 100_000
    clip = load_clip_model(tiny[0], tiny[1])
    members = {0: np.arange(4), 2: np.arange(4, 8)}
    rng = np.random.default_rng(0)
    from PIL import Image
    images = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
              for _ in range(8)]
    result = naming.name_clusters(clip, vocabulary, members, lambda i, side: images[i],
                                  str(tmp_path / 'cache'), 'cpu', report=lambda m: None)
    assert sorted(result) == [0, 2] and result[0].chosen != result[2].chosen
    assert all(len({n for n, _ in s.ranked}) == 3 and {n for n, _ in s.ranked} <= set(lines)
               for s in result.values())


# ------------------------------------------------------------------------ eval.py --annotate

WORDS = ['disc', 'checkerboard', 'stripes', 'cat', 'tree', 'car', 'cloud', 'river']
# As many names as clusters: each one is some cluster's name, whatever the random weights.
HOSTILE = ['<img src=x onerror="window.pwned=1"> say "cheese" & \'smile\'',
           '=1+1 line\u2028break\rinside\x85 \u202eright-to-left\u200f mark',
           '<b>' + 'x' * 2 ** 16]  # a 64 KB line: 16 times the longest prompt


@pytest.fixture(scope='module')
def named(run, tiny, tmp_path_factory):
    """An export named by the tiny model from a vocabulary of its own."""
    folder = tmp_path_factory.mktemp('named')
    words = folder / 'words.txt'
    words.write_text('\n'.join(WORDS) + '\n', encoding='utf-8')
    out = folder / 'out'
    run.eval('selflabel', '--annotate', str(out), '--naming-model', tiny[0],
             '--naming-weights', tiny[1], '--vocabulary', str(words))
    return out


def summary(out):
    return json.loads((out / 'summary.json').read_text(encoding='utf-8'))


def gallery_data(out):
    text = (out / 'gallery-data.js').read_text(encoding='ascii')
    return json.loads(text[text.index('{'):text.rindex('}') + 1])


def test_every_cluster_gets_three_ranked_scored_suggestions(named):
    clusters = summary(named)['clusters']
    assert len(clusters) == 3
    chosen = [c['suggested_name'] for c in clusters]
    assert len(set(chosen)) == 3 and set(chosen) <= set(WORDS)
    for c in clusters:
        names = [s['name'] for s in c['suggestions']]
        scores = [s['score'] for s in c['suggestions']]
        assert len(set(names)) == 3 and set(names) <= set(WORDS)
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
        assert c['name'] == c['suggested_name']
    info = summary(named)['naming']
    assert info['vocabulary_size'] == len(WORDS) and info['templates'] == ['a photo of a {}.']
    _, rows = read_csv(named / 'annotations.csv')
    assert all(row[3] == chosen[int(row[1])] for row in rows)
    assert yaml.safe_load((named / 'names.yml').read_text()) == dict(enumerate(chosen))
    data = gallery_data(named)
    assert [c['suggestions'] for c in data['clusters']] == [c['suggestions'] for c in clusters]
    assert '<script src="naming.js"></script>' in (named / 'index.html').read_text()


def test_user_names_win_over_suggestions(run, tiny, named, tmp_path):
    names = tmp_path / 'names.yml'
    names.write_text('1: my stripes\n', encoding='utf-8')
    out = tmp_path / 'out'
    args = ('--naming-model', tiny[0], '--naming-weights', tiny[1],
            '--vocabulary', str(named.parent / 'words.txt'))
    run.eval('selflabel', '--annotate', str(out), '--names', str(names), *args)
    clusters = summary(out)['clusters']
    assert clusters[1]['name'] == 'my stripes' and clusters[1]['suggested_name'] in WORDS
    assert clusters[0]['name'] == clusters[0]['suggested_name']
    _, rows = read_csv(out / 'annotations.csv')
    assert {row[3] for row in rows if row[1] == '1'} == {'my stripes'}
    # a names.yml edited in the export folder wins at the next export into it too
    (out / 'names.yml').write_text('0: edited\n', encoding='utf-8')
    run.eval('selflabel', '--annotate', str(out), *args)
    assert summary(out)['clusters'][0]['name'] == 'edited'
    assert len(summary(out)['clusters'][0]['suggestions']) == 3


def test_merged_clusters_are_named_after_the_merge(run, tiny, tmp_path):
    corrections = tmp_path / 'corrections.csv'
    corrections.write_text('id,path,from,to\n,,2,0\n', encoding='utf-8')
    out = tmp_path / 'out'
    run.eval('selflabel', '--annotate', str(out), '--corrections', str(corrections),
             '--naming-model', tiny[0], '--naming-weights', tiny[1])
    clusters = summary(out)['clusters']
    assert 'suggestions' in clusters[0] and 'suggestions' in clusters[1]
    assert 'suggestions' not in clusters[2] and clusters[2]['merged_into'] == 0


def test_predict_is_named_too(run, tiny, tmp_path):
    from tests.folder_images import write_pattern_folder
    new = tmp_path / 'new'
    write_pattern_folder(str(new), 4, seed=3)
    out = tmp_path / 'out'
    run.eval('selflabel', '--predict', str(new), '--annotate', str(out),
             '--naming-model', tiny[0], '--naming-weights', tiny[1], '--naming-images', '0')
    named_clusters = [c for c in summary(out)['clusters'] if c['size']]
    assert named_clusters and all(len(c['suggestions']) == 3 for c in named_clusters)
    assert summary(out)['naming']['images_per_cluster'] == 'all'


@pytest.mark.parametrize('extra, message', [
    (('--naming-model', 'ViT-Q-99'), "open_clip has no model 'ViT-Q-99'"),
    (('--vocabulary', 'words.txt'), '--vocabulary and --naming-images go with --naming-model'),
    (('--naming-model', 'ViT-B-32', '--naming-images', '-1'), '--naming-images must be 0'),
    (('--naming-model', 'ViT-B-32', '--naming-weights', 'nowhere.safetensors'),
     '--naming-weights: file not found: nowhere.safetensors'),
])
def test_naming_options_are_checked_before_any_model_runs(run, tmp_path, extra, message,
                                                          monkeypatch):
    import eval as eval_script
    monkeypatch.setattr(eval_script, 'load_clustering_model', lambda *a: pytest.fail('ran'))
    with pytest.raises(SystemExit) as exit_:
        run.eval('selflabel', '--annotate', str(tmp_path / 'out'), *extra)
    assert message in str(exit_.value.code)
    assert not (tmp_path / 'out').exists()


def test_hostile_vocabulary_entries_survive_as_text(run, tiny, tmp_path, browser):
    words = tmp_path / 'hostile.txt'
    words.write_text('\n'.join(HOSTILE), encoding='utf-8')
    out = tmp_path / 'out'
    run.eval('selflabel', '--annotate', str(out), '--naming-model', tiny[0],
             '--naming-weights', tiny[1], '--vocabulary', str(words))
    clusters = summary(out)['clusters']
    chosen = [c['suggested_name'] for c in clusters]
    assert sorted(chosen) == sorted(HOSTILE)
    assert all(sorted(s['name'] for s in c['suggestions']) == sorted(HOSTILE) for c in clusters)
    csv.field_size_limit(2 ** 24)  # the 64 KB name
    _, rows = read_csv(out / 'annotations.csv')
    assert all(from_cell(row[3]) == chosen[int(row[1])] for row in rows)
    assert read_names(str(out / 'names.yml'), 3) == dict(enumerate(chosen))
    assert [c['name'] for c in gallery_data(out)['clusters']] == chosen
    open_page(browser, out)
    assert js(browser, "return [window.pwned === undefined, [...document.scripts].every("
                       "s => s.src.startsWith('file://') && !s.textContent), "
                       "document.querySelectorAll('[onerror], b, img[src=\"x\"]').length]") \
        == [True, True, 0]  # only the page's own script files ran; no element made of a name
    shown = js(browser, "return [...document.querySelectorAll('button.suggestion')].map("
                        "b => b.firstChild.textContent)")
    assert sorted(shown) == sorted(s['name'] for c in clusters for s in c['suggestions'])


def test_a_click_on_a_suggestion_fills_the_name_and_saves(named, browser):
    from selenium.webdriver.common.by import By
    open_page(browser, named)
    clusters = summary(named)['clusters']
    third = clusters[1]['suggestions'][2]['name']
    browser.find_element(By.CSS_SELECTOR, '#cluster-1 button.suggestion[data-rank="2"]').click()
    field = browser.find_element(By.CSS_SELECTOR, '#cluster-1 input.name')
    assert field.get_attribute('value') == third
    assert f'1: {third} (' in js(browser, "return document.getElementById('nav').textContent")
    assert '1 renamed cluster' in js(browser, "return document.getElementById("
                                              "'changes-summary').textContent") \
        or third == clusters[1]['name']
    browser.find_element(By.ID, 'save-names').click()
    saved = read_names(wait_for_download(browser.downloads, 'names.yml'), 3)
    assert saved == {0: clusters[0]['name'], 1: third, 2: clusters[2]['name']}


def test_quality_script_counts_names_and_synonyms(tmp_path, monkeypatch, capsys):
    """benchmarks/naming.py on a hand-made labelled export: a class name matched exactly, and
    through its WordNet synset ('car' carries 'automobile')."""
    import runpy
    import sys
    (tmp_path / 'annotations.csv').write_text(
        'path,cluster,confidence,name,label,source,id\n'
        'a,0,0.9,car,automobile,model,0\nb,0,0.9,car,automobile,model,1\n'
        'c,1,0.9,dog,cat,model,2\nd,1,0.9,dog,cat,model,3\n', encoding='utf-8')
    clusters = [{'cluster': 0, 'suggested_name': 'car',
                 'suggestions': [{'name': 'car', 'score': 0.5}, {'name': 'bus', 'score': 0.2},
                                 {'name': 'van', 'score': 0.1}]},
                {'cluster': 1, 'suggested_name': 'dog',
                 'suggestions': [{'name': 'dog', 'score': 0.5}, {'name': 'cat', 'score': 0.3},
                                 {'name': 'fox', 'score': 0.1}]}]
    (tmp_path / 'summary.json').write_text(json.dumps({'clusters': clusters, 'naming': {
        'model': 'ViT-B-32', 'vocabulary_size': 20102, 'images_per_cluster': 50}}))
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks', 'naming.py')
    monkeypatch.setattr(sys, 'argv', [script, str(tmp_path)])
    runpy.run_path(script, run_name='__main__')
    output = capsys.readouterr().out
    assert 'chosen name right for 1/2 clusters; the class among the top 3 for 2/2' in output
