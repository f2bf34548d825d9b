"""meshpkt.verify"""
