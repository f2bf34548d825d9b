"""meshpkt.rules"""
