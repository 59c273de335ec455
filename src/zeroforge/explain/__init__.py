"""Looking inside a trained model: attention maps (``explain.attention``) and saliency
(``explain.saliency``, through Captum). The CLI front is ``zeroforge explain attention|saliency RUN``."""
