"""Backbones, heads, strict weight loading and the MoCo conversion."""
import os

import pytest
import torch

from models import ClusteringModel, ContrastiveModel, build_backbone
from simclr import convert_moco_state_dict, import_pretrained
from utils.checkpoint import WeightsMismatch, atomic_save, load, load_state_dict_strict


@pytest.mark.parametrize('name,size,dim', [('small', 16, 128), ('resnet18_cifar', 32, 512),
                                           ('resnet18_stl', 96, 512)])
def test_backbone_feature_dims(name, size, dim):
    backbone = build_backbone(name)
    assert backbone['dim'] == dim
    assert backbone['backbone'](torch.randn(2, 3, size, size)).shape == (2, dim)


def test_stl_feature_map_sizes_follow_the_original():
    # MaxPool2d(2, 2, padding=1): 96 -> 49, then the stages at 49, 25, 13, 7
    net = build_backbone('resnet18_stl')['backbone']
    sizes = []
    for name in ('layer1', 'layer2', 'layer3', 'layer4'):
        getattr(net, name).register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    stem = net.maxpool(net.relu(net.bn1(net.conv1(torch.randn(1, 3, 96, 96)))))
    assert stem.shape[-1] == 49
    net(torch.randn(1, 3, 96, 96))
    assert sizes == [49, 25, 13, 7]


def test_stl_pool_is_the_original_avgpool7():
    net = build_backbone('resnet18_stl')['backbone'].eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        pooled = torch.nn.AvgPool2d(7)(net.layer4(net.layer3(net.layer2(net.layer1(
            net.maxpool(net.relu(net.bn1(net.conv1(x)))))))))
        assert torch.allclose(net(x), pooled.flatten(1), atol=1e-6)


@pytest.mark.parametrize('name', ['resnet18_cifar', 'resnet18_stl', 'resnet50'])
def test_resnet_init_is_kaiming_fan_out_and_unit_batchnorm(name):
    torch.manual_seed(0)
    net = build_backbone(name)['backbone']
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        out_channels, _, kh, kw = conv.weight.shape
        expected_std = (2 / (out_channels * kh * kw)) ** 0.5  # kaiming normal, fan_out, relu
        assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.2 if
                                                          conv.weight.numel() > 1000 else 0.5)
    if name != 'resnet50':  # our 3x3 stem conv replaces torchvision's: initialised the same way
        assert net.conv1.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_contrastive_output_is_normalised():
    model = ContrastiveModel(build_backbone('small'), head='mlp', features_dim=16)
    out = model(torch.randn(4, 3, 16, 16))
    assert out.shape == (4, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)


def test_clustering_model_heads_and_passes():
    model = ClusteringModel(build_backbone('small'), nclusters=7, nheads=3).eval()
    x = torch.randn(2, 3, 16, 16)
    outputs = model(x)
    assert len(outputs) == 3 and all(o.shape == (2, 7) for o in outputs)
    features = model(x, forward_pass='backbone')
    assert features.shape == (2, 128)
    assert torch.allclose(model(features, forward_pass='head')[1], outputs[1], atol=1e-6)
    both = model(x, forward_pass='return_all')
    assert set(both) == {'features', 'output'}


def test_strict_load_lists_missing_and_unexpected_keys():
    model = ClusteringModel(build_backbone('small'), nclusters=3)
    state = model.state_dict()
    state['extra.weight'] = torch.zeros(1)
    del state['cluster_head.0.bias']
    with pytest.raises(WeightsMismatch) as e:
        load_state_dict_strict(model, state, 'file.pth')
    message = str(e.value)
    assert 'file.pth' in message
    assert 'missing keys (1): cluster_head.0.bias' in message
    assert 'unexpected keys (1): extra.weight' in message


def test_strict_load_reports_shape_mismatch():
    model = ClusteringModel(build_backbone('small'), nclusters=3)
    other = ClusteringModel(build_backbone('small'), nclusters=5)
    with pytest.raises(WeightsMismatch, match=r'cluster_head.0.weight: file \(5, 128\) vs model '
                                              r'\(3, 128\)'):
        load_state_dict_strict(model, other.state_dict(), 'f')


def test_strict_load_allows_named_prefixes_only():
    pretext = ContrastiveModel(build_backbone('small'))
    model = ClusteringModel(build_backbone('small'), nclusters=3)
    load_state_dict_strict(model, pretext.state_dict(), 'p', allowed_missing=('cluster_head.',),
                           allowed_unexpected=('contrastive_head.',))
    assert torch.equal(model.backbone[0].weight, pretext.backbone[0].weight)


def test_atomic_save_roundtrip_leaves_no_temporary(tmp_path):
    path = tmp_path / 'sub' / 'ckpt.pth.tar'
    atomic_save({'epoch': 3, 'w': torch.ones(2)}, str(path))
    assert load(str(path))['epoch'] == 3
    assert os.listdir(tmp_path / 'sub') == ['ckpt.pth.tar']


def moco_checkpoint(model):
    """A MoCo v2 style checkpoint of `model`'s weights (query and momentum encoders, queue)."""
    state = {}
    for key, value in model.state_dict().items():
        inner = key.replace('backbone.', '', 1).replace('contrastive_head.', 'fc.', 1)
        state['module.encoder_q.' + inner] = value
        state['module.encoder_k.' + inner] = torch.zeros_like(value)
    state['module.queue'] = torch.zeros(4, 4)
    return {'state_dict': state, 'epoch': 800}


def test_moco_import_converts_every_key(tmp_path):
    source = ContrastiveModel(build_backbone('resnet50'))
    path = tmp_path / 'moco.pth.tar'
    torch.save(moco_checkpoint(source), path)
    target = ContrastiveModel(build_backbone('resnet50'))
    import_pretrained(target, str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_moco_import_mismatch_lists_keys(tmp_path):
    state = moco_checkpoint(ContrastiveModel(build_backbone('resnet50')))
    del state['state_dict']['module.encoder_q.layer4.2.bn3.weight']
    state['state_dict']['module.encoder_q.fc.4.weight'] = torch.zeros(1)
    path = tmp_path / 'moco.pth.tar'
    torch.save(state, path)
    with pytest.raises(WeightsMismatch) as e:
        import_pretrained(ContrastiveModel(build_backbone('resnet50')), str(path))
    assert 'missing keys (1): backbone.layer4.2.bn3.weight' in str(e.value)
    assert 'unexpected keys (1): contrastive_head.4.weight' in str(e.value)


def test_convert_moco_drops_momentum_encoder_and_queue():
    converted = convert_moco_state_dict({'module.encoder_q.conv1.weight': 1,
                                         'module.encoder_q.fc.0.bias': 2,
                                         'module.encoder_k.conv1.weight': 3, 'module.queue': 4})
    assert converted == {'backbone.conv1.weight': 1, 'contrastive_head.0.bias': 2}
