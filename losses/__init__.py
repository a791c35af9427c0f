from losses.confidence_ce import ConfidenceBasedCE
from losses.contrastive import SimCLRLoss
from losses.scan_loss import SCANLoss, entropy, lowest_loss_head, scan_head_losses

__all__ = ['ConfidenceBasedCE', 'SimCLRLoss', 'SCANLoss', 'entropy', 'lowest_loss_head',
           'scan_head_losses']
