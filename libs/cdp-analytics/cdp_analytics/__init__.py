"""Customer-value models, pure Python + numpy/scipy (no I/O).

- ``summary``       transactions -> per-customer (frequency x, recency t_x, age T, monetary m_x)
- ``bgnbd``         BG/NBD (Fader, Hardie & Lee 2005): fit by maximum likelihood; expected
                    purchases, P(alive)
- ``gamma_gamma``   Gamma-Gamma spend model (Fader & Hardie 2013): fit; expected average order value
- ``clv``           discounted customer lifetime value from the two
"""
