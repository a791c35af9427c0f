from losses.confidence_ce import ConfidenceBasedCE
from losses.contrastive import SimCLRLoss
from losses.scan_loss import SCANLoss, entropy

__all__ = ['ConfidenceBasedCE', 'SimCLRLoss', 'SCANLoss', 'entropy']
