"""meshpkt.plot"""
