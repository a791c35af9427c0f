"""The original SCAN code's models, written here from its facts (reference/SCAN.md), with its
parameter names, to build checkpoints in its exact key layout and to check that our models
compute the same function with the same weights."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride,
                                                    bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR stem (`stl=False`) or STL stem: MaxPool2d(2, 2, padding=1), AvgPool2d(7)."""

    def __init__(self, stl=False):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stl = stl
        self.layer1 = self._make_layer(64, 1)
        self.layer2 = self._make_layer(128, 2)
        self.layer3 = self._make_layer(256, 2)
        self.layer4 = self._make_layer(512, 2)

    def _make_layer(self, planes, stride):
        layers = []
        for s in (stride, 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        if self.stl:
            out = F.max_pool2d(out, kernel_size=2, stride=2, padding=1)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 7) if self.stl else F.adaptive_avg_pool2d(out, 1)
        return torch.flatten(out, 1)


class ContrastiveModel(nn.Module):
    def __init__(self, backbone, dim=512, features_dim=128):
        super().__init__()
        self.backbone = backbone
        self.contrastive_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(),
                                              nn.Linear(dim, features_dim))

    def forward(self, x):
        return F.normalize(self.contrastive_head(self.backbone(x)), dim=1)


class ClusteringModel(nn.Module):
    def __init__(self, backbone, nclusters, nheads=1, dim=512):
        super().__init__()
        self.backbone = backbone
        self.cluster_head = nn.ModuleList([nn.Linear(dim, nclusters) for _ in range(nheads)])

    def forward(self, x):
        features = self.backbone(x)
        return [head(features) for head in self.cluster_head]


def randomise_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters, so that eval-mode outputs depend
    on every buffer being loaded into the right place."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model
